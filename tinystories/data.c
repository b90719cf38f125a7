// data.c: TinyStories input readers and the token shard format.
//   shards       write/read token files (header + uint16 tokens), streaming writer for big runs
//   stories      two readers, both streaming (a 64 KB window, one story in memory at a time):
//                  V2 text  stories separated by lines "<|endoftext|>" (TinyStoriesV2-GPT4-*.txt, V1 .txt)
//                  JSON     arrays of records with a "story" string (TinyStories_all_data.tar.gz)
//                each story is trimmed of surrounding whitespace; empty stories are dropped
//   split        the deterministic train/validation rule
// Readers call a StoryFn once per story; errors name the file and the byte offset.
#ifndef OURO_DATA_C
#define OURO_DATA_C

#include "tokenizer.c"
#include <limits.h>  // PATH_MAX

#define SHARD_MAGIC "OUROSHRD"
#define SHARD_VERSION 1
#define SHARD_HEADER_BYTES 24
#define STORY_MAX_BYTES (256u << 20)   // longer "stories" are rejected: the input is not TinyStories

// ----------------------------------------------------------------------------
// token shards. File format (all integers little-endian):
//   offset  size  field
//        0     8  magic "OUROSHRD"
//        8     4  uint32 version (1)
//       12     4  uint32 vocab_size V of the tokenizer that wrote it (257..65536)
//       16     8  uint64 n_tokens
//       24  2*n_tokens  tokens, uint16 each, every one < V (checked); prepare ends every story with
//                   TOKEN_EOT (256), which readers do not rely on
// File length is exactly 24 + 2 * n_tokens.

typedef struct {
    AtomicFile af;
    uint64_t n_tokens;
    int vocab_size;
} ShardWriter;

void shard_header_bytes(unsigned char hdr[SHARD_HEADER_BYTES], int vocab_size, uint64_t n_tokens) {
    memcpy(hdr, SHARD_MAGIC, 8);
    le_put_u32(hdr + 8, SHARD_VERSION);
    le_put_u32(hdr + 12, (uint32_t)vocab_size);
    le_put_u64(hdr + 16, n_tokens);
}

// Whether two output paths (which may not exist yet) name the same file: the same name in the
// same directory, compared by the directory's canonical path ("X", "./X" and "d/../X" agree).
int same_output(const char *a, const char *b) {
    const char *paths[2] = {a, b}, *names[2];
    char dirs[2][PATH_MAX], real[2][PATH_MAX];
    for (int i = 0; i < 2; i++) {
        const char *slash = strrchr(paths[i], '/');
        names[i] = slash ? slash + 1 : paths[i];
        snprintf(dirs[i], sizeof dirs[i], "%.*s", slash ? (int)(slash - paths[i]) + 1 : 1, slash ? paths[i] : ".");
        if (!realpath(dirs[i], real[i])) return strcmp(a, b) == 0;  // a missing folder: fails later anyway
    }
    return strcmp(real[0], real[1]) == 0 && strcmp(names[0], names[1]) == 0;
}

// Opens path for streaming: the header is written with n_tokens = 0 and patched on close.
int shard_writer_open(ShardWriter *sw, const char *path, int vocab_size) {
    if (vocab_size < TOKENIZER_FIRST_MERGE || vocab_size > TOKENIZER_MAX_VOCAB)
        return fail(path, "vocab_size %d is out of range [%d, %d]", vocab_size, TOKENIZER_FIRST_MERGE, TOKENIZER_MAX_VOCAB);
    sw->n_tokens = 0;
    sw->vocab_size = vocab_size;
    if (atomic_open(&sw->af, path)) return -1;
    unsigned char hdr[SHARD_HEADER_BYTES];
    shard_header_bytes(hdr, vocab_size, 0);
    atomic_write(&sw->af, hdr, sizeof hdr);
    return 0;
}

// Appends n tokens (ids must be < vocab_size; the reader rejects anything else).
void shard_writer_add(ShardWriter *sw, const uint16_t *tokens, size_t n) {
    unsigned char buf[8192];
    while (n) {
        size_t k = n < sizeof buf / 2 ? n : sizeof buf / 2;
        for (size_t i = 0; i < k; i++) le_put_u16(buf + 2 * i, tokens[i]);
        atomic_write(&sw->af, buf, 2 * k);
        tokens += k;
        n -= k;
        sw->n_tokens += k;
    }
}

// Patches the token count into the header and moves the file into place.
int shard_writer_close(ShardWriter *sw) {
    unsigned char hdr[SHARD_HEADER_BYTES];
    shard_header_bytes(hdr, sw->vocab_size, sw->n_tokens);
    if (fseek(sw->af.f, 0, SEEK_SET) != 0) sw->af.failed = 1;
    atomic_write(&sw->af, hdr, sizeof hdr);
    return atomic_commit(&sw->af);
}

void shard_writer_abort(ShardWriter *sw) { atomic_abort(&sw->af); }

int shard_write(const char *path, const uint16_t *tokens, size_t n, int vocab_size) {
    ShardWriter sw;
    if (shard_writer_open(&sw, path, vocab_size)) return -1;
    shard_writer_add(&sw, tokens, n);
    return shard_writer_close(&sw);
}

// Reads and checks the header and the exact file length; leaves f positioned at the tokens.
int shard_read_header(FILE *f, const char *path, long long file_bytes, uint64_t *n_tokens, int *vocab_size) {
    unsigned char hdr[SHARD_HEADER_BYTES];
    if (file_bytes < SHARD_HEADER_BYTES || fread(hdr, 1, sizeof hdr, f) != sizeof hdr)
        return fail(path, "truncated: %lld bytes, a shard header is %d", file_bytes, SHARD_HEADER_BYTES);
    if (memcmp(hdr, SHARD_MAGIC, 8) != 0) return fail(path, "not an ouro token shard (bad magic)");
    uint32_t version = le_get_u32(hdr + 8), V = le_get_u32(hdr + 12);
    uint64_t n = le_get_u64(hdr + 16);
    if (version != SHARD_VERSION) return fail(path, "version %u, this build reads %d", version, SHARD_VERSION);
    if (V < TOKENIZER_FIRST_MERGE || V > TOKENIZER_MAX_VOCAB)
        return fail(path, "vocab_size %u is out of range [%d, %d]", V, TOKENIZER_FIRST_MERGE, TOKENIZER_MAX_VOCAB);
    uint64_t payload = (uint64_t)file_bytes - SHARD_HEADER_BYTES;
    if (payload % 2 != 0 || payload / 2 != n) {
        if (n > (UINT64_MAX - SHARD_HEADER_BYTES) / 2)
            return fail(path, "%lld bytes, the header's %llu tokens imply more than 2^64 (truncated or padded file)",
                        file_bytes, (unsigned long long)n);
        return fail(path, "%lld bytes, the header's %llu tokens imply %llu bytes (truncated or padded file)", file_bytes,
                    (unsigned long long)n, (unsigned long long)(SHARD_HEADER_BYTES + 2 * n));
    }
    if (n > SIZE_MAX / 2) return fail(path, "%llu tokens do not fit in memory on this machine", (unsigned long long)n);
    *n_tokens = n;
    *vocab_size = (int)V;
    return 0;
}

// Header only (for `prepare info` and for programs that stream or map the tokens themselves).
int shard_info(const char *path, uint64_t *n_tokens, int *vocab_size) {
    long long size = file_size(path);
    if (size < 0) return -1;
    FILE *f = fopen(path, "rb");
    if (!f) return fail(path, "cannot open: %s", strerror(errno));
    int r = shard_read_header(f, path, size, n_tokens, vocab_size);
    fclose(f);
    return r;
}

// Reads a whole shard into a fresh array (*tokens, free() it); checks every field, the exact
// length, and that every token id is below the vocabulary size.
int shard_read(const char *path, uint16_t **tokens, size_t *n, int *vocab_size) {
    long long size = file_size(path);
    if (size < 0) return -1;
    FILE *f = fopen(path, "rb");
    if (!f) return fail(path, "cannot open: %s", strerror(errno));
    uint64_t count = 0;
    int V = 0;
    if (shard_read_header(f, path, size, &count, &V)) { fclose(f); return -1; }
    uint16_t *out = xmalloc((size_t)count * sizeof *out);
    unsigned char buf[8192];
    for (size_t done = 0; done < count;) {
        size_t k = count - done < sizeof buf / 2 ? (size_t)(count - done) : sizeof buf / 2;
        if (fread(buf, 2, k, f) != k) { fclose(f); free(out); return fail(path, "short read at token %zu", done); }
        for (size_t i = 0; i < k; i++) {
            out[done + i] = le_get_u16(buf + 2 * i);
            if (out[done + i] >= V) {
                fclose(f);
                free(out);
                return fail(path, "token %zu (byte %zu) is %u, not below vocab_size %d", done + i,
                            SHARD_HEADER_BYTES + 2 * (done + i), (unsigned)le_get_u16(buf + 2 * i), V);
            }
        }
        done += k;
    }
    fclose(f);
    *tokens = out;
    *n = (size_t)count;
    *vocab_size = V;
    return 0;
}

// ----------------------------------------------------------------------------
// ByteReader: sequential bytes from a FILE (through a 64 KB window) or from memory, with the
// input offset of every byte for error messages.

typedef struct {
    FILE *f;                    // NULL when reading from memory
    const unsigned char *data;  // bytes at hand: the window, or the whole memory buffer
    size_t len, pos;            // bytes at hand, next byte
    uint64_t base;              // input offset of data[0]
    int read_error;
    unsigned char window[1 << 16];
} ByteReader;

void reader_init_file(ByteReader *r, FILE *f) {
    r->f = f;
    r->data = r->window;
    r->len = r->pos = 0;
    r->base = 0;
    r->read_error = 0;
}

void reader_init_memory(ByteReader *r, const void *buf, size_t len) {
    r->f = NULL;
    r->data = buf;
    r->len = len;
    r->pos = 0;
    r->base = 0;
    r->read_error = 0;
}

// Makes at least one byte available; returns 0 at the end of the input (or on a read error).
int reader_refill(ByteReader *r) {
    if (r->pos < r->len) return 1;
    if (!r->f) return 0;
    r->base += r->len;
    r->len = fread(r->window, 1, sizeof r->window, r->f);
    r->pos = 0;
    if (r->len == 0 && ferror(r->f)) r->read_error = 1;
    return r->len > 0;
}

uint64_t reader_offset(const ByteReader *r) { return r->base + r->pos; }
int reader_peek(ByteReader *r) { return reader_refill(r) ? r->data[r->pos] : -1; }
int reader_next(ByteReader *r) { return reader_refill(r) ? r->data[r->pos++] : -1; }

// ----------------------------------------------------------------------------
// stories

// Called once per story (trimmed, non-empty, not NUL-terminated). Return 0 to continue, 1 to
// stop reading early (not an error), -1 to abort with ouro_error set.
typedef int (*StoryFn)(void *ctx, const char *story, size_t len);

typedef struct {
    uint64_t stories;           // delivered to the callback
    uint64_t story_bytes;       // their total length
    uint64_t empty;             // dropped: nothing but whitespace
    uint64_t truncated;         // dropped: cut-off final story of a text file (see read_text_stories)
    uint64_t without_story;     // JSON records with no "story" field (skipped)
    uint64_t input_bytes;       // bytes consumed from the input
} StoryStats;

typedef struct { char *data; size_t len, cap; } StrBuf;

void sb_reserve(StrBuf *b, size_t extra) {
    if (b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    b->data = realloc(b->data, cap);
    if (!b->data) die("out of memory (%zu bytes) reading stories", cap);
    b->cap = cap;
}
void sb_append(StrBuf *b, const void *p, size_t n) {
    if (!n) return;   // b->data may still be NULL
    sb_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}
void sb_push(StrBuf *b, char c) { sb_reserve(b, 1); b->data[b->len++] = c; }

int is_space_byte(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// Trims surrounding whitespace and hands a non-empty story to fn.
int emit_story(const char *s, size_t n, StoryFn fn, void *ctx, StoryStats *st) {
    while (n && is_space_byte((unsigned char)s[0])) { s++; n--; }
    while (n && is_space_byte((unsigned char)s[n - 1])) n--;
    if (!n) { st->empty++; return 0; }
    st->stories++;
    st->story_bytes += n;
    return fn(ctx, s, n);
}

int is_separator_line(const char *s, size_t n) {
    while (n && is_space_byte((unsigned char)s[0])) { s++; n--; }
    while (n && is_space_byte((unsigned char)s[n - 1])) n--;
    return n == sizeof TOKEN_EOT_TEXT - 1 && memcmp(s, TOKEN_EOT_TEXT, n) == 0;
}

// V2 text: a story is the lines up to a line that is "<|endoftext|>" (surrounding whitespace and
// a \r\n line end allowed; \r\n inside stories becomes \n). The text after the last separator is
// a story if the file ends with a newline, and is dropped as truncated (counted in
// st->truncated) if its last line is cut off: a byte-range cut such as the 2 MiB sample ends
// mid-sentence. A separator inside a line is ordinary text.
int read_text_stories(ByteReader *r, const char *name, StoryFn fn, void *ctx, StoryStats *st) {
    StrBuf story = {0};
    size_t line_start = 0;        // where the current line begins in story
    uint64_t story_offset = 0;    // input offset where the current story begins
    int status = 0;
    while (status == 0 && reader_refill(r)) {
        const unsigned char *p = r->data + r->pos;
        const unsigned char *nl = memchr(p, '\n', r->len - r->pos);
        size_t n = nl ? (size_t)(nl - p) : r->len - r->pos;
        if (story.len + n > STORY_MAX_BYTES) {
            status = fail(name, "byte %llu: the story starting at byte %llu is longer than %u MiB; stories must be "
                          "separated by lines <|endoftext|>", (unsigned long long)reader_offset(r),
                          (unsigned long long)story_offset, STORY_MAX_BYTES >> 20);
            break;
        }
        sb_append(&story, p, n);
        r->pos += n + (nl != NULL);
        if (!nl) continue;                          // the line goes on in the next window
        if (story.len > line_start && story.data[story.len - 1] == '\r') story.len--;
        // an empty line is no separator; checking that first also keeps story.data + line_start
        // defined (story.data is NULL until the first byte arrives: NULL + 0 is undefined in C)
        if (story.len > line_start && is_separator_line(story.data + line_start, story.len - line_start)) {
            status = emit_story(story.data, line_start, fn, ctx, st);
            story.len = line_start = 0;
            story_offset = reader_offset(r);
        } else {
            sb_push(&story, '\n');
            line_start = story.len;
        }
    }
    if (status == 0 && r->read_error) status = fail(name, "byte %llu: read error", (unsigned long long)reader_offset(r));
    if (status == 0 && story.len > 0) {
        if (line_start == story.len) status = emit_story(story.data, story.len, fn, ctx, st);   // ended with \n
        else if (is_separator_line(story.data + line_start, story.len - line_start))
            status = emit_story(story.data, line_start, fn, ctx, st);
        else st->truncated++;
    }
    st->input_bytes += reader_offset(r);
    free(story.data);
    return status < 0 ? -1 : 0;
}

// ----------------------------------------------------------------------------
// JSON: the TinyStories_all_data shards are arrays of objects such as
//   {"story": "...", "instruction": {"prompt:": "...", "words": [...], "features": [...]},
//    "summary": "...", "source": "GPT-4"}
// The reader is strict (RFC 8259): it validates every value it skips, rejects raw control
// characters in strings, bad escapes and unpaired surrogates, and decodes \uXXXX (with
// surrogate pairs) to UTF-8. Raw bytes inside strings are passed through unchanged. Several
// arrays in a row are accepted, so `tar -xzOf TinyStories_all_data.tar.gz` can be read directly.

#define JSON_MAX_DEPTH 64

typedef struct {
    ByteReader *r;
    const char *name;
    StrBuf value;   // the last string read
    int depth;
} JsonParser;

__attribute__((format(printf, 3, 4)))
int json_fail(JsonParser *jp, uint64_t at, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fail(jp->name, "byte %llu: %s", (unsigned long long)at, msg);
}

// Describes the byte c (or the end of the input) for error messages.
const char *json_describe(int c, char buf[16]) {
    if (c < 0) return "end of file (truncated JSON?)";
    if (c >= 0x21 && c < 0x7F) snprintf(buf, 16, "'%c'", c);
    else snprintf(buf, 16, "byte 0x%02X", c);
    return buf;
}

int json_expected(JsonParser *jp, const char *what) {
    char buf[16];
    uint64_t at = reader_offset(jp->r);
    return json_fail(jp, at, "expected %s, found %s", what, json_describe(reader_peek(jp->r), buf));
}

void json_skip_space(JsonParser *jp) {
    for (int c; (c = reader_peek(jp->r)) == ' ' || c == '\t' || c == '\n' || c == '\r';) jp->r->pos++;
}

void utf8_append(StrBuf *b, uint32_t cp) {
    if (cp < 0x80) sb_push(b, (char)cp);
    else if (cp < 0x800) { sb_push(b, (char)(0xC0 | cp >> 6)); sb_push(b, (char)(0x80 | (cp & 0x3F))); }
    else if (cp < 0x10000) {
        sb_push(b, (char)(0xE0 | cp >> 12)); sb_push(b, (char)(0x80 | (cp >> 6 & 0x3F))); sb_push(b, (char)(0x80 | (cp & 0x3F)));
    } else {
        sb_push(b, (char)(0xF0 | cp >> 18)); sb_push(b, (char)(0x80 | (cp >> 12 & 0x3F)));
        sb_push(b, (char)(0x80 | (cp >> 6 & 0x3F))); sb_push(b, (char)(0x80 | (cp & 0x3F)));
    }
}

// Reads the 4 hex digits of a \u escape.
int json_hex4(JsonParser *jp, uint32_t *out) {
    *out = 0;
    for (int i = 0; i < 4; i++) {
        uint64_t at = reader_offset(jp->r);
        int c = reader_next(jp->r), v;
        if (c >= '0' && c <= '9') v = c - '0';
        else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
        else { char buf[16]; return json_fail(jp, at, "\\u escape needs 4 hex digits, found %s", json_describe(c, buf)); }
        *out = *out << 4 | (uint32_t)v;
    }
    return 0;
}

// Reads a string (the reader is at its opening quote) into jp->value, decoding escapes.
int json_string(JsonParser *jp) {
    ByteReader *r = jp->r;
    uint64_t start = reader_offset(r);
    if (reader_peek(r) != '"') return json_expected(jp, "a string");
    r->pos++;
    jp->value.len = 0;
    for (;;) {
        if (!reader_refill(r)) return json_fail(jp, reader_offset(r), "end of file inside the string that starts at byte %llu (truncated JSON?)", (unsigned long long)start);
        // fast path: copy the run of ordinary bytes
        size_t i = r->pos;
        while (i < r->len && r->data[i] != '"' && r->data[i] != '\\' && r->data[i] >= 0x20) i++;
        if (jp->value.len + (i - r->pos) > STORY_MAX_BYTES)
            return json_fail(jp, start, "string longer than %u MiB", STORY_MAX_BYTES >> 20);
        sb_append(&jp->value, r->data + r->pos, i - r->pos);
        r->pos = i;
        if (i == r->len) continue;
        uint64_t at = reader_offset(r);
        int c = reader_next(r);
        if (c == '"') return 0;
        if (c < 0x20) return json_fail(jp, at, "raw control byte 0x%02X inside a string (must be escaped)", c);
        int e = reader_next(r);                     // c == '\\'
        switch (e) {
        case '"': case '\\': case '/': sb_push(&jp->value, (char)e); break;
        case 'b': sb_push(&jp->value, '\b'); break;
        case 'f': sb_push(&jp->value, '\f'); break;
        case 'n': sb_push(&jp->value, '\n'); break;
        case 'r': sb_push(&jp->value, '\r'); break;
        case 't': sb_push(&jp->value, '\t'); break;
        case 'u': {
            uint32_t cp, low;
            if (json_hex4(jp, &cp)) return -1;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return json_fail(jp, at, "unpaired low surrogate \\u%04X", cp);
            if (cp >= 0xD800 && cp <= 0xDBFF) {         // a high surrogate must be followed by \uDC00-\uDFFF
                uint64_t at2 = reader_offset(r);
                if (reader_next(r) != '\\' || reader_next(r) != 'u' || json_hex4(jp, &low) || low < 0xDC00 || low > 0xDFFF)
                    return json_fail(jp, at2, "high surrogate \\u%04X (byte %llu) is not followed by a low surrogate \\uDC00-\\uDFFF",
                                     cp, (unsigned long long)at);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            }
            utf8_append(&jp->value, cp);
            break;
        }
        default: { char buf[16]; return json_fail(jp, at, "invalid escape \\ followed by %s", json_describe(e, buf)); }
        }
    }
}

// Matches a literal (true, false, null).
int json_literal(JsonParser *jp, const char *word) {
    uint64_t at = reader_offset(jp->r);
    for (const char *w = word; *w; w++)
        if (reader_next(jp->r) != *w) return json_fail(jp, at, "invalid literal (expected '%s')", word);
    return 0;
}

// Validates a number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
int json_number(JsonParser *jp) {
    ByteReader *r = jp->r;
    uint64_t at = reader_offset(r);
    int c = reader_peek(r);
    if (c == '-') { r->pos++; c = reader_peek(r); }
    if (c == '0') { r->pos++; c = reader_peek(r); }
    else if (c >= '1' && c <= '9') while ((c = reader_peek(r)) >= '0' && c <= '9') r->pos++;
    else return json_fail(jp, at, "invalid number");
    if (c == '.') {
        r->pos++;
        if (!((c = reader_peek(r)) >= '0' && c <= '9')) return json_fail(jp, at, "invalid number (no digit after '.')");
        while ((c = reader_peek(r)) >= '0' && c <= '9') r->pos++;
    }
    if (c == 'e' || c == 'E') {
        r->pos++;
        if ((c = reader_peek(r)) == '+' || c == '-') r->pos++;
        if (!((c = reader_peek(r)) >= '0' && c <= '9')) return json_fail(jp, at, "invalid number (no digit in the exponent)");
        while ((c = reader_peek(r)) >= '0' && c <= '9') r->pos++;
    }
    if (c >= '0' && c <= '9') return json_fail(jp, at, "invalid number (leading zero)");
    return 0;
}

int json_value(JsonParser *jp);

// Reads "[ v, v, ... ]" or "{ "k": v, ... }" (the reader is at the bracket), skipping values.
int json_container(JsonParser *jp) {
    ByteReader *r = jp->r;
    int close = reader_next(r) == '[' ? ']' : '}';
    if (++jp->depth > JSON_MAX_DEPTH) return json_fail(jp, reader_offset(r) - 1, "nested deeper than %d levels", JSON_MAX_DEPTH);
    json_skip_space(jp);
    if (reader_peek(r) == close) { r->pos++; jp->depth--; return 0; }
    for (;;) {
        if (close == '}') {
            if (json_string(jp)) return -1;
            json_skip_space(jp);
            if (reader_peek(r) != ':') return json_expected(jp, "':' after an object key");
            r->pos++;
        }
        if (json_value(jp)) return -1;
        json_skip_space(jp);
        int c = reader_peek(r);
        if (c == close) { r->pos++; jp->depth--; return 0; }
        if (c != ',') return json_expected(jp, close == ']' ? "',' or ']' in an array" : "',' or '}' in an object");
        r->pos++;
        json_skip_space(jp);
    }
}

// Skips one value (surrounding whitespace included), validating it.
int json_value(JsonParser *jp) {
    json_skip_space(jp);
    int c = reader_peek(jp->r), r;
    if (c == '"') r = json_string(jp);
    else if (c == '{' || c == '[') r = json_container(jp);
    else if (c == 't') r = json_literal(jp, "true");
    else if (c == 'f') r = json_literal(jp, "false");
    else if (c == 'n') r = json_literal(jp, "null");
    else if (c == '-' || (c >= '0' && c <= '9')) r = json_number(jp);
    else r = json_expected(jp, "a JSON value");
    return r;
}

// One story record: an object; its "story" member (a string, at most once) goes to fn.
int json_record(JsonParser *jp, StrBuf *story, StoryFn fn, void *ctx, StoryStats *st) {
    ByteReader *r = jp->r;
    uint64_t start = reader_offset(r);
    if (reader_peek(r) != '{') return json_expected(jp, "a story record (an object)");
    r->pos++;
    int has_story = 0;
    json_skip_space(jp);
    if (reader_peek(r) == '}') r->pos++;
    else for (;;) {
        uint64_t key_at = reader_offset(r);
        if (json_string(jp)) return -1;
        int is_story = jp->value.len == 5 && memcmp(jp->value.data, "story", 5) == 0;
        json_skip_space(jp);
        if (reader_peek(r) != ':') return json_expected(jp, "':' after an object key");
        r->pos++;
        json_skip_space(jp);
        if (is_story) {
            if (has_story) return json_fail(jp, key_at, "second \"story\" in the record that starts at byte %llu", (unsigned long long)start);
            if (reader_peek(r) != '"') return json_expected(jp, "a string for \"story\"");
            if (json_string(jp)) return -1;
            story->len = 0;
            sb_append(story, jp->value.data, jp->value.len);
            has_story = 1;
        } else if (json_value(jp)) return -1;
        json_skip_space(jp);
        int c = reader_peek(r);
        if (c == '}') { r->pos++; break; }
        if (c != ',') return json_expected(jp, "',' or '}' in a story record");
        r->pos++;
        json_skip_space(jp);
    }
    if (!has_story) { st->without_story++; return 0; }
    return emit_story(story->data, story->len, fn, ctx, st);
}

int read_json_stories(ByteReader *r, const char *name, StoryFn fn, void *ctx, StoryStats *st) {
    JsonParser jp = {r, name, {0}, 0};
    StrBuf story = {0};
    int status = 0, arrays = 0;
    for (;;) {
        json_skip_space(&jp);
        int c = reader_peek(r);
        if (c < 0) {
            if (arrays == 0) status = json_fail(&jp, reader_offset(r), "empty input: expected a JSON array of story records");
            break;
        }
        if (c != '[') { status = json_expected(&jp, arrays ? "another array or the end of the file" : "a JSON array '[' of story records"); break; }
        r->pos++;
        arrays++;
        json_skip_space(&jp);
        if (reader_peek(r) == ']') { r->pos++; continue; }
        for (;;) {
            json_skip_space(&jp);
            if ((status = json_record(&jp, &story, fn, ctx, st)) != 0) break;
            json_skip_space(&jp);
            c = reader_peek(r);
            if (c == ']') { r->pos++; break; }
            if (c != ',') { status = json_expected(&jp, "',' or ']' after a story record"); break; }
            r->pos++;
        }
        if (status) break;
    }
    if (r->read_error) status = fail(name, "byte %llu: read error", (unsigned long long)reader_offset(r));
    st->input_bytes += reader_offset(r);
    free(jp.value.data);
    free(story.data);
    return status < 0 ? -1 : 0;
}

// ----------------------------------------------------------------------------
// entry points

int path_has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

// Reads the stories of one file: JSON records when the name ends in ".json", else V2 text.
// Returns 0 (also when fn stopped early) or -1 with ouro_error naming the file and position.
int read_stories(const char *path, StoryFn fn, void *ctx, StoryStats *st) {
    if (file_size(path) < 0) return -1;
    FILE *f = fopen(path, "rb");
    if (!f) return fail(path, "cannot open: %s", strerror(errno));
    ByteReader *r = xmalloc(sizeof *r);
    reader_init_file(r, f);
    int status = path_has_suffix(path, ".json") ? read_json_stories(r, path, fn, ctx, st) : read_text_stories(r, path, fn, ctx, st);
    free(r);
    fclose(f);
    return status;
}

// The same readers over a memory buffer (name is used in error messages).
int read_text_stories_mem(const char *name, const char *buf, size_t len, StoryFn fn, void *ctx, StoryStats *st) {
    ByteReader *r = xmalloc(sizeof *r);
    reader_init_memory(r, buf, len);
    int status = read_text_stories(r, name, fn, ctx, st);
    free(r);
    return status;
}

int read_json_stories_mem(const char *name, const char *buf, size_t len, StoryFn fn, void *ctx, StoryStats *st) {
    ByteReader *r = xmalloc(sizeof *r);
    reader_init_memory(r, buf, len);
    int status = read_json_stories(r, name, fn, ctx, st);
    free(r);
    return status;
}

// ----------------------------------------------------------------------------
// train/validation split, at story granularity.
//   fraction f:  a story is validation iff hash(story bytes) < f * 2^64. Deterministic, does not
//                depend on the order or the file a story comes from, and identical stories
//                (TinyStories has duplicates) always land on the same side.
//   first N:     the first N distinct stories are validation, and so is any later copy of one
//                of them (remembered by hash); everything else is training.
// Either way no story text is in both splits.

typedef struct {
    double fraction;      // used when max_stories == 0
    long max_stories;     // > 0: the "first N" rule
    uint64_t *hashes;     // (cap) open-addressing set of validation story hashes (0 = empty)
    size_t n, cap;
} SplitRule;

uint64_t story_hash(const char *s, size_t n) {
    uint64_t z = bpe_hash((const unsigned char *)s, n);   // FNV-1a, then splitmix64's finaliser
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return z ? z : 1;
}

int split_set_has(const SplitRule *sr, uint64_t h, size_t *slot) {
    size_t s = h & (sr->cap - 1);
    while (sr->hashes[s] && sr->hashes[s] != h) s = (s + 1) & (sr->cap - 1);
    *slot = s;
    return sr->hashes[s] == h;
}

int split_is_validation(SplitRule *sr, const char *story, size_t len) {
    uint64_t h = story_hash(story, len);
    if (sr->max_stories <= 0) return (double)(h >> 11) * 0x1p-53 < sr->fraction;
    if (!sr->hashes) {
        sr->cap = 64;
        while (sr->cap < 2 * (size_t)sr->max_stories) sr->cap *= 2;
        sr->hashes = xcalloc(sr->cap, sizeof *sr->hashes);
    }
    size_t slot;
    if (split_set_has(sr, h, &slot)) return 1;
    if (sr->n >= (size_t)sr->max_stories) return 0;
    sr->hashes[slot] = h;
    sr->n++;
    return 1;
}

void split_free(SplitRule *sr) { free(sr->hashes); sr->hashes = NULL; sr->n = sr->cap = 0; }

#endif // OURO_DATA_C
