# entry(len, cb, v, d) for dl_reload: calls cb(v, d) from a frame len bytes larger (CFA = rbp + 16 at the call).
# Same code size and call offset as dl_entry_fixed.S.
    .text
    .globl entry
    .type entry, @function
entry:
    .cfi_startproc
    push %rbp
    .cfi_def_cfa_offset 16
    .cfi_offset %rbp, -16
    mov %rsp, %rbp
    .cfi_def_cfa_register %rbp
    sub %rdi, %rsp
    and $-16, %rsp
    mov %rsi, %rax
    mov %rdx, %rdi
    mov %rcx, %rsi
    call *%rax
    leave
    .cfi_def_cfa %rsp, 8
    ret
    nop
    nop
    .cfi_endproc
    .size entry, .-entry
    .section .note.GNU-stack, "", @progbits
