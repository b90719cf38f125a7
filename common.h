// common.h: the few helpers every ouro.c program shares (libc only).
//   errors     fail() records "file: problem" in ouro_error and returns -1
//   sizes      checked size_t products, so no allocation comes from an overflowed size; malloc
//              that stops on failure, and one that asks for 2 MiB pages for the big buffers
//   files      whole-file reads with a size cap; atomic writes (temp file, then rename)
//   random     xorshift64* generator with uniform and normal draws; its state is one uint64
//   flags      strict parsing of numeric command-line values
// Each program is one translation unit (train.c includes ouro.c includes common.h); the
// functions are static inline so a program that uses only some of them compiles warning-free.
#ifndef OURO_COMMON_H
#define OURO_COMMON_H

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// errors: library code never exits; it returns -1 and leaves the reason here.

static char ouro_error[1024];

// Records "<where>: <message>" as the current error and returns -1, so loaders can write
//     if (hdr.magic != MAGIC) return fail(path, "not an ouro checkpoint (bad magic)");
__attribute__((format(printf, 2, 3)))
static inline int fail(const char *where, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (where && where[0]) snprintf(ouro_error, sizeof ouro_error, "%s: %s", where, msg);
    else snprintf(ouro_error, sizeof ouro_error, "%s", msg);
    return -1;
}

// For programs (never library code): print the message and exit non-zero.
__attribute__((format(printf, 1, 2), noreturn))
static inline void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "error: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(1);
}

// ----------------------------------------------------------------------------
// sizes

// *out = a * b; returns 0, or -1 when the product does not fit in size_t.
static inline int size_mul(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return -1;
    *out = a * b;
    return 0;
}

// *out = a + b; returns 0, or -1 on overflow.
static inline int size_add(size_t a, size_t b, size_t *out) {
    if (b > SIZE_MAX - a) return -1;
    *out = a + b;
    return 0;
}

// malloc that treats failure as fatal with a message (sizes are checked before we get here).
static inline void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory allocating %zu bytes", n);
    return p;
}

static inline void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) die("out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

static inline char *xstrdup(const char *s) { return strcpy(xmalloc(strlen(s) + 1), s); }

// xmalloc for the big buffers that are read again and again, or with strides: the training
// activations (187 MB for the tiny bench config), run.c's weights and KV caches. It asks Linux
// for 2 MiB pages (transparent huge pages, granted when /sys/kernel/mm/transparent_hugepage/
// enabled says "madvise" or "always" and free 2 MiB pages exist). The activation block spans
// ~46,000 pages of 4 KiB, far more than the ~2,000 the TLB holds, and strided reads step onto
// another page every few rows; in 2 MiB pages it is 90. Measured: a training step 2-4% faster,
// decoding 5-8% (tiny bench model) and 9-19% (medium) faster. The size is rounded up to whole
// 2 MiB pages, so a buffer under 1 MiB, which that would more than double, keeps malloc's pages;
// so does every buffer where the hint does not exist (not Linux, or a strict -std=c11 build,
// which hides MADV_HUGEPAGE: the Makefile uses gnu11). Free with free().
static inline void *xmalloc_huge(size_t n) {
#ifdef MADV_HUGEPAGE
    const size_t huge = (size_t)2 << 20;
    if (n < huge / 2) return xmalloc(n);
    size_t rounded;
    if (size_add(n, huge - 1, &rounded)) die("out of memory allocating %zu bytes", n);
    rounded = rounded / huge * huge;   // aligned_alloc wants a multiple of the alignment
    void *p = aligned_alloc(huge, rounded);
    if (!p) die("out of memory allocating %zu bytes", rounded);
    madvise(p, rounded, MADV_HUGEPAGE);   // a hint: its failure changes nothing but speed
    return p;
#else
    return xmalloc(n);
#endif
}

// ----------------------------------------------------------------------------
// files

// Size of the file at path, or -1 (with ouro_error set) if it cannot be stat'ed.
static inline long long file_size(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return fail(path, "cannot open: %s", strerror(errno));
    if (!S_ISREG(st.st_mode)) return fail(path, "not a regular file");
    return (long long)st.st_size;
}

// Reads the whole file into a fresh buffer (NUL-terminated for convenience; *len excludes it).
// Refuses files larger than max_bytes so a wrong path cannot exhaust memory.
static inline int read_file(const char *path, size_t max_bytes, char **out, size_t *len) {
    long long size = file_size(path);
    if (size < 0) return -1;
    if ((unsigned long long)size > max_bytes)
        return fail(path, "file is %lld bytes, more than the %zu this reader accepts", size, max_bytes);
    FILE *f = fopen(path, "rb");
    if (!f) return fail(path, "cannot open: %s", strerror(errno));
    char *buf = xmalloc((size_t)size + 1);
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) { free(buf); return fail(path, "short read (%zu of %lld bytes)", got, size); }
    buf[size] = 0;
    *out = buf;
    *len = (size_t)size;
    return 0;
}

// Atomic writes: write into "<path>.tmp", then atomic_commit() flushes it to the disk (fsync)
// and renames it over path. A crash of the program or of the machine, or a failed write, leaves
// the old file or the new one under the real name, never half of one. One writer per path: two
// at once would share the temp file.
typedef struct {
    FILE *f;
    char tmp_path[4096];
    const char *path;
    int failed;
} AtomicFile;

static inline int atomic_open(AtomicFile *af, const char *path) {
    af->path = path;
    af->failed = 0;
    struct stat st;   // renaming over a device or a directory would replace it (e.g. /dev/null)
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) return fail(path, "exists and is not a regular file");
    if (snprintf(af->tmp_path, sizeof af->tmp_path, "%s.tmp", path) >= (int)sizeof af->tmp_path)
        return fail(path, "path too long");
    af->f = fopen(af->tmp_path, "wb");
    if (!af->f) return fail(af->tmp_path, "cannot create: %s", strerror(errno));
    return 0;
}

// Writes n bytes; remembers a failure so callers can write many fields and check once.
static inline void atomic_write(AtomicFile *af, const void *data, size_t n) {
    if (!af->failed && n && fwrite(data, 1, n, af->f) != n) af->failed = 1;
}

// Closes the temp file and renames it over the destination; on any failure the temp file is
// removed and the destination is left untouched.
static inline int atomic_commit(AtomicFile *af) {
    int bad = af->failed;
    if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0) bad = 1;   // the data before the rename
    if (fclose(af->f) != 0) bad = 1;
    af->f = NULL;
    if (bad) { remove(af->tmp_path); return fail(af->path, "write failed: %s", strerror(errno)); }
    if (rename(af->tmp_path, af->path) != 0) {
        int e = errno;
        remove(af->tmp_path);
        return fail(af->path, "cannot rename temp file into place: %s", strerror(e));
    }
    return 0;
}

// Abandons an atomic write (for error paths): the destination is left untouched.
static inline void atomic_abort(AtomicFile *af) {
    if (af->f) fclose(af->f);
    af->f = NULL;
    remove(af->tmp_path);
}

// ----------------------------------------------------------------------------
// random numbers: xorshift64* (Vigna 2016). Tiny, fast and good enough for initialisation,
// data sampling and token sampling. The whole state is one uint64, saved in checkpoints.

typedef struct { uint64_t state; } Rng;

static inline void rng_seed(Rng *r, uint64_t seed) {
    // splitmix64 scrambles the seed so nearby seeds give unrelated streams; never 0.
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    r->state = z ? z : 0x2545F4914F6CDD1Dull;
}

static inline uint32_t rng_u32(Rng *r) {
    r->state ^= r->state >> 12;
    r->state ^= r->state << 25;
    r->state ^= r->state >> 27;
    return (uint32_t)((r->state * 0x2545F4914F6CDD1Dull) >> 32);
}

// Uniform in [0, 1) with 24 random bits.
static inline float rng_uniform(Rng *r) { return (rng_u32(r) >> 8) / 16777216.0f; }

// Uniform integer in [0, n) for n >= 1 (the modulo bias is below 2^-32 * n: negligible here).
static inline uint64_t rng_below(Rng *r, uint64_t n) {
    uint64_t x = ((uint64_t)rng_u32(r) << 32) | rng_u32(r);
    return x % n;
}

// Standard normal by Box-Muller (one draw per call; simple and deterministic).
static inline double rng_normal(Rng *r) {
    double u1 = (rng_u32(r) + 1.0) / 4294967297.0;  // in (0, 1): log(u1) is finite
    double u2 = rng_u32(r) / 4294967296.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

// ----------------------------------------------------------------------------
// flags: strict numeric parsing ("12abc", "", "1e999" and out-of-range values are errors)

static inline int parse_long(const char *flag, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) return fail(flag, "expected an integer, got '%s'", s);
    if (v < lo || v > hi) return fail(flag, "%ld is out of range [%ld, %ld]", v, lo, hi);
    *out = v;
    return 0;
}

static inline int parse_int(const char *flag, const char *s, int lo, int hi, int *out) {
    long v = 0;
    if (parse_long(flag, s, lo, hi, &v)) return -1;
    *out = (int)v;
    return 0;
}

static inline int parse_double(const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return fail(flag, "expected a number, got '%s'", s);
    if (v < lo || v > hi) return fail(flag, "%s is out of range [%g, %g]", s, lo, hi);  // s: %g rounds
    *out = v;
    return 0;
}

#endif // OURO_COMMON_H
