/* Offline symbolization for hakprof: a recorded return address and its module (path, load bias) become a function
 * name from the ELF symbol tables and, where debug info exists, file:line from elfutils' libdw. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hakprof.h"

/* A function symbol. Names point into the ELF string tables, which stay mapped while the module's Dwfl lives. */
struct hp_symbol {
    uint64_t addr, size;
    const char *name;
    unsigned rank;    /* which of several names at one address to show; higher wins */
    int provisional;  /* size unknown (0 in the table): extent runs to the next symbol or the section end */
    int looked;       /* shown has been worked out */
    char *shown;      /* the demangled C++ name (malloc'd), or NULL: name is shown as it is */
};

/* One ELF file, opened once whatever base it was loaded at: lookups translate ip - base to a file address, which
 * is what symbol values and DWARF use (for a non-PIE executable the base is 0 and the ip is the file address). */
struct hp_module {
    char *path;
    int ok;           /* 0: missing, unreadable or not ELF; every lookup in it fails without retrying */
    Dwfl *dwfl;       /* one per module, so each sits at its own file addresses with no overlap to arrange */
    Dwfl_Module *mod;
    Dwarf_Addr bias;  /* dwfl address = file address + bias (0 as reported, kept general) */
    struct hp_symbol *syms; /* sorted by address, one entry per address */
    size_t nsyms;
};

struct hp_sym {
    struct hp_module **slots; /* open addressing on the path; a recording names each module many times */
    size_t cap, count;
    struct hp_module *last;   /* consecutive frames of a stack are often in the same module */
};

/* libdwfl's offline callbacks: find separate debug files by build id and .gnu_debuglink in the standard places
 * (/usr/lib/debug, .debug beside the file); debuginfo_path NULL means that default. */
static char *hp_debuginfo_path = NULL;
static const Dwfl_Callbacks hp_offline_callbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = &hp_debuginfo_path,
};

struct hp_sym *hp_sym_new(void)
{
    elf_version(EV_CURRENT);
    struct hp_sym *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cap = 64;
    s->slots = calloc(s->cap, sizeof *s->slots);
    if (!s->slots) {
        free(s);
        return NULL;
    }
    return s;
}

/* ---- Symbol tables ----------------------------------------------------------------------------------------------- */

struct symvec {
    struct hp_symbol *v;
    size_t n, cap;
};

/* Among aliases at one address (malloc and __libc_malloc, getpid and __getpid) the name a reader recognizes is
 * the one with fewer leading underscores, even when it is only a weak alias (glibc's getpid is); then global over
 * weak over local. */
static unsigned symbol_rank(const GElf_Sym *sym, const char *name)
{
    unsigned bind = GELF_ST_BIND(sym->st_info);
    unsigned b = bind == STB_GLOBAL ? 2 : bind == STB_WEAK ? 1 : 0;
    unsigned under = 0;
    while (name[under] == '_' && under < 3)
        under++;
    return (3 - under) * 4 + b;
}

/* Adds the function symbols of every section of the given type (SHT_SYMTAB or SHT_DYNSYM). A zero-size symbol
 * (hand-written assembly) provisionally reaches the end of its section; the next symbol clamps it later. */
static int add_symbols(struct symvec *out, Elf *elf, Elf64_Word type)
{
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(elf, scn))) {
        GElf_Shdr shdr;
        if (!gelf_getshdr(scn, &shdr) || shdr.sh_type != type || shdr.sh_entsize == 0)
            continue;
        Elf_Data *data = elf_getdata(scn, NULL);
        if (!data)
            continue;
        size_t n = shdr.sh_size / shdr.sh_entsize;
        for (size_t i = 1; i < n; i++) {
            GElf_Sym sym;
            if (!gelf_getsym(data, (int)i, &sym))
                break;
            unsigned t = GELF_ST_TYPE(sym.st_info);
            if ((t != STT_FUNC && t != STT_GNU_IFUNC) || sym.st_shndx == SHN_UNDEF ||
                sym.st_shndx >= SHN_LORESERVE || sym.st_value == 0)
                continue;
            const char *name = elf_strptr(elf, shdr.sh_link, sym.st_name);
            if (!name || !*name)
                continue;
            uint64_t size = sym.st_size;
            int provisional = size == 0;
            if (provisional) {
                GElf_Shdr home;
                Elf_Scn *hs = elf_getscn(elf, sym.st_shndx);
                if (!hs || !gelf_getshdr(hs, &home) || sym.st_value < home.sh_addr ||
                    sym.st_value >= home.sh_addr + home.sh_size)
                    continue;
                size = home.sh_addr + home.sh_size - sym.st_value;
            }
            if (out->n == out->cap) {
                size_t cap = out->cap ? 2 * out->cap : 1024;
                struct hp_symbol *grown = realloc(out->v, cap * sizeof *grown);
                if (!grown)
                    return 0;
                out->v = grown;
                out->cap = cap;
            }
            out->v[out->n++] = (struct hp_symbol){.addr = sym.st_value, .size = size, .name = name,
                                                   .rank = symbol_rank(&sym, name), .provisional = provisional};
        }
    }
    return 1;
}

static int has_section(Elf *elf, Elf64_Word type)
{
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(elf, scn))) {
        GElf_Shdr shdr;
        if (gelf_getshdr(scn, &shdr) && shdr.sh_type == type && shdr.sh_size > 0)
            return 1;
    }
    return 0;
}

static int cmp_symbol(const void *a, const void *b)
{
    const struct hp_symbol *x = a, *y = b;
    if (x->addr != y->addr)
        return x->addr < y->addr ? -1 : 1;
    if (x->rank != y->rank)
        return x->rank > y->rank ? -1 : 1;
    if (x->provisional != y->provisional)
        return x->provisional ? 1 : -1; /* a known size over a guessed one */
    if (x->size != y->size)
        return x->size > y->size ? -1 : 1;
    return strcmp(x->name, y->name); /* a stable choice, so reports do not change from run to run */
}

/* Sorts, keeps the best name per address, and stops a provisional (zero-size) extent at the next symbol. */
static void finish_symbols(struct symvec *v)
{
    if (v->n == 0)
        return;
    qsort(v->v, v->n, sizeof *v->v, cmp_symbol);
    size_t k = 0;
    for (size_t i = 0; i < v->n; i++) {
        struct hp_symbol *kept = k ? &v->v[k - 1] : NULL;
        if (!kept || v->v[i].addr != kept->addr) {
            v->v[k++] = v->v[i];
        } else if (kept->provisional && !v->v[i].provisional) {
            /* the better name, with an alias's real extent */
            kept->size = v->v[i].size;
            kept->provisional = 0;
        }
    }
    v->n = k;
    for (size_t i = 0; i + 1 < k; i++)
        if (v->v[i].provisional && v->v[i].size > v->v[i + 1].addr - v->v[i].addr)
            v->v[i].size = v->v[i + 1].addr - v->v[i].addr;
}

/* ---- Modules ----------------------------------------------------------------------------------------------------- */

static void load_module(struct hp_module *m)
{
    m->dwfl = dwfl_begin(&hp_offline_callbacks);
    if (!m->dwfl)
        return;
    dwfl_report_begin(m->dwfl);
    /* Base 0 with add_p_vaddr: the module sits at its own link-time addresses, so dwfl address = file address
     * for executables and shared libraries alike (prelinked ones included). */
    m->mod = dwfl_report_elf(m->dwfl, m->path, m->path, -1, 0, true);
    dwfl_report_end(m->dwfl, NULL, NULL);
    if (!m->mod)
        return;
    Elf *elf = dwfl_module_getelf(m->mod, &m->bias);
    if (!elf)
        return;
    struct symvec v = {NULL, 0, 0};
    /* .dynsym is always there in a shared object, even stripped; .symtab adds static functions when present. */
    add_symbols(&v, elf, SHT_SYMTAB);
    add_symbols(&v, elf, SHT_DYNSYM);
    if (!has_section(elf, SHT_SYMTAB)) {
        /* Stripped: a separate debug file (Debian's -dbgsym packages) still holds the full .symtab. */
        Dwarf_Addr dbias;
        Dwarf *dw = dwfl_module_getdwarf(m->mod, &dbias);
        Elf *debug = dw ? dwarf_getelf(dw) : NULL;
        if (debug && debug != elf)
            add_symbols(&v, debug, SHT_SYMTAB);
    }
    finish_symbols(&v);
    m->syms = v.v;
    m->nsyms = v.n;
    m->ok = 1;
}

static uint64_t hash_path(const char *p)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

static int grow(struct hp_sym *s)
{
    size_t cap = s->cap * 2;
    struct hp_module **slots = calloc(cap, sizeof *slots);
    if (!slots)
        return 0;
    for (size_t i = 0; i < s->cap; i++) {
        struct hp_module *m = s->slots[i];
        if (!m)
            continue;
        size_t j = hash_path(m->path) & (cap - 1);
        while (slots[j])
            j = (j + 1) & (cap - 1);
        slots[j] = m;
    }
    free(s->slots);
    s->slots = slots;
    s->cap = cap;
    return 1;
}

/* The module for path, opened on first use; a file that cannot be opened is remembered as such. */
static struct hp_module *get_module(struct hp_sym *s, const char *path)
{
    if (s->last && strcmp(s->last->path, path) == 0)
        return s->last;
    size_t j = hash_path(path) & (s->cap - 1);
    for (; s->slots[j]; j = (j + 1) & (s->cap - 1))
        if (strcmp(s->slots[j]->path, path) == 0)
            return s->last = s->slots[j];
    if (2 * (s->count + 1) > s->cap) {
        if (!grow(s))
            return NULL;
        j = hash_path(path) & (s->cap - 1);
        while (s->slots[j])
            j = (j + 1) & (s->cap - 1);
    }
    struct hp_module *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return NULL;
    }
    load_module(m);
    s->slots[j] = m;
    s->count++;
    return s->last = m;
}

/* The symbol covering a file address. Symbols can nest (a local label inside a larger function), so when the
 * nearest one below ends too early a few earlier ones are tried. */
static const struct hp_symbol *find_symbol(const struct hp_module *m, uint64_t a)
{
    size_t lo = 0, hi = m->nsyms;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->syms[mid].addr <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo, tries = 0; i > 0 && tries < 16; i--, tries++) {
        const struct hp_symbol *sym = &m->syms[i - 1];
        if (a - sym->addr < sym->size)
            return sym;
    }
    return NULL;
}

/* C++ names are shown demangled, as perf and gdb show them ("operator new(unsigned long)", not "_Znwm"). The
 * demangler is libstdc++'s __cxa_demangle, found at run time, so hakprof builds with no C++ library; where
 * libstdc++ is not installed, names stay mangled. */
typedef char *(*demangle_fn)(const char *mangled, char *buf, size_t *len, int *status);
static demangle_fn demangler(void)
{
    static int tried;
    static demangle_fn fn;
    if (!tried) {
        tried = 1;
        void *lib = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_LOCAL);
        if (lib)
            *(void **)&fn = dlsym(lib, "__cxa_demangle");
    }
    return fn;
}

static const char *shown_name(struct hp_symbol *sym)
{
    if (!sym->looked) {
        sym->looked = 1;
        demangle_fn fn = sym->name[0] == '_' && sym->name[1] == 'Z' ? demangler() : NULL;
        int status = -1;
        char *d = fn ? fn(sym->name, NULL, NULL, &status) : NULL;
        if (d && status == 0)
            sym->shown = d;
        else
            free(d);
    }
    return sym->shown ? sym->shown : sym->name;
}

int hp_sym_lookup(struct hp_sym *s, const char *path, uint64_t base, uint64_t ip, struct hp_frame_info *out)
{
    memset(out, 0, sizeof *out);
    /* "" is the main program in a module map; the caller resolves it to the header's exe. */
    if (!s || !path || !*path || ip < base)
        return 0;
    struct hp_module *m = get_module(s, path);
    if (!m || !m->ok)
        return 0;
    uint64_t a = ip - base;
    struct hp_symbol *sym = (struct hp_symbol *)find_symbol(m, a); /* the module's own table: it caches a name */
    if (sym) {
        out->function = shown_name(sym);
        out->offset = a - sym->addr;
    }
    Dwfl_Line *line = dwfl_module_getsrc(m->mod, a + m->bias);
    if (line) {
        int lineno = 0;
        const char *file = dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL);
        if (file && lineno > 0) {
            out->file = file;
            out->line = lineno;
        }
    }
    return out->function || out->file;
}

void hp_sym_free(struct hp_sym *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->cap; i++) {
        struct hp_module *m = s->slots[i];
        if (!m)
            continue;
        if (m->dwfl)
            dwfl_end(m->dwfl);
        for (size_t k = 0; k < m->nsyms; k++)
            free(m->syms[k].shown);
        free(m->syms);
        free(m->path);
        free(m);
    }
    free(s->slots);
    free(s);
}

/* ---- Frames of a recording: the module map's generations, and the name of a frame no symbol covers ---- */
int32_t hp_module_of(const struct hp_mod *mods, size_t n, uint64_t ip)
{
    int32_t best = -1;
    for (size_t i = 0; i < n; i++) {
        const struct hp_mod *m = &mods[i];
        if (ip >= m->lo && ip <= m->hi && (best < 0 || m->generation >= mods[best].generation))
            best = (int32_t)i;
    }
    return best;
}

int hp_sym_frame(struct hp_sym *s, const struct hp_mod *m, uint64_t ip, struct hp_frame_info *fi, char *label,
                 size_t len)
{
    memset(fi, 0, sizeof *fi);
    /* Frames are return addresses: ip - 1 lies in the call instruction, so a call that ends a function (a noreturn
     * callee) is charged to the right function and line. */
    if (m && s && ip && hp_sym_lookup(s, m->path, m->base, ip - 1, fi) && fi->function)
        return 1;
    /* No symbol covers it: still a stable, readable name (module and offset from its load bias). */
    if (m) {
        const char *base = strrchr(m->path, '/');
        snprintf(label, len, "%s+0x%llx", base ? base + 1 : m->path, (unsigned long long)(ip - m->base));
    } else {
        snprintf(label, len, "0x%llx", (unsigned long long)ip);
    }
    return 0;
}
