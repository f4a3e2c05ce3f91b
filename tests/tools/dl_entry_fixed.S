# entry(len, cb, v, d) for dl_reload: calls cb(v, d) from a frame of fixed size (CFA = rsp + 32 at the call).
# Same code size and call offset as dl_entry_variable.S.
    .text
    .globl entry
    .type entry, @function
entry:
    .cfi_startproc
    push %rbp
    .cfi_def_cfa_offset 16
    .cfi_offset %rbp, -16
    sub $16, %rsp
    .cfi_def_cfa_offset 32
    nop
    nop
    nop
    nop
    nop
    nop
    mov %rsi, %rax
    mov %rdx, %rdi
    mov %rcx, %rsi
    call *%rax
    add $16, %rsp
    .cfi_def_cfa_offset 16
    pop %rbp
    .cfi_def_cfa_offset 8
    ret
    .cfi_endproc
    .size entry, .-entry
    .section .note.GNU-stack, "", @progbits
