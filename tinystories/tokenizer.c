// tokenizer.c: a byte-level BPE tokenizer (train, encode, decode, save, load), shared by the data
// tool (prepare), train.c and run.c.
//
// Vocabulary: vocab_size V = 257 + number of merges, 257 <= V <= 65536 so every id fits a uint16.
//   ids 0..255     the 256 byte values. Every byte string encodes, so decode(encode(x)) == x
//                  exactly, for invalid UTF-8, NUL bytes and the empty string too.
//   id  256        <|endoftext|> (TOKEN_EOT), the separator written after every story.
//                  encode() never produces it: the literal text "<|endoftext|>" inside a story is
//                  encoded as ordinary bytes, so text cannot forge a story boundary and round
//                  trips stay exact. The data tool appends TOKEN_EOT after each story itself.
//   ids 257..V-1   merges in training order: merge i joins (left, right) into the new id 257 + i.
//
// Pre-tokenisation. Text is first cut into chunks and merges never cross a chunk boundary, so
// tokens stay word-like (GPT-2's idea, written as a small byte scanner instead of a regex):
//   letters  = A-Z a-z and every byte >= 0x80 (UTF-8 characters stay inside their word)
//   digits   = 0-9;  spaces = ' ' \t \n \v \f \r;  other = everything else (punctuation)
//   chunk    = an optional single leading ' ' + a run of letters (an ASCII ' between two
//              letters counts as a letter: "Lily's", "don't"; also one that ends a chunk cut at
//              its size limit), or of digits, or of other bytes;
//              or a run of spaces, which gives its last ' ' to a following word:
//              "Hi,  Tom!\n" -> "Hi" "," " " " Tom" "!" "\n"
//   A chunk ends after TOKENIZER_MAX_CHUNK bytes at most, and the scan starts afresh there (so
//   the byte after a cut begins a new chunk by the rules above: an apostrophe after 64 letters is
//   punctuation). A huge "word" (random bytes, a long line of '=') costs linear time, and no
//   token is longer.
//
// Training (deterministic): count every distinct chunk once, weighted by its frequency; count
// the adjacent pairs of all chunks; repeatedly merge the most frequent pair (ties: the smaller
// (left, right)). After a merge only the chunks that contained the pair are rewritten and their
// pair counts updated, found through a per-pair list of chunks; a max-heap with lazy deletion
// finds the next best pair. Cost ~ corpus scan + sum over merges of the affected chunks, not
// O(corpus * merges). Training stops early when no pair occurs at least twice.
//
// Encoding applies the merges to each chunk by priority: while some adjacent pair has a merge,
// merge every occurrence of the pair with the lowest merge index. That reproduces exactly what
// training did to the same chunk.
#ifndef OURO_TOKENIZER_C
#define OURO_TOKENIZER_C

#include "../common.h"

#define TOKEN_EOT 256                 // <|endoftext|>
#define TOKENIZER_FIRST_MERGE 257     // id of the first merge
#define TOKENIZER_MAX_VOCAB 65536     // ids must fit in uint16
#define TOKENIZER_MAX_CHUNK 64        // longest chunk, hence longest token, in bytes
#define TOKENIZER_MAGIC "OUROTOKN"
#define TOKENIZER_VERSION 1
#define TOKENIZER_HEADER_BYTES 24

static const char TOKEN_EOT_TEXT[] = "<|endoftext|>";

typedef struct {
    int vocab_size;          // 257 + n_merges
    int n_merges;
    uint16_t *merges;        // (n_merges, 2): merge i joins merges[2i], merges[2i+1] into 257 + i
    uint32_t *piece_start;   // (vocab_size + 1): token id's bytes are pieces[piece_start[id] .. piece_start[id+1])
    char *pieces;            // all token bytes, back to back
    uint32_t *rank_keys;     // open-addressing table (left << 16 | right) -> merge index,
    int32_t *rank_values;    //   rank_values[slot] == -1 marks an empty slot
    uint32_t rank_mask;      // table size - 1 (a power of two)
} Tokenizer;

// ----------------------------------------------------------------------------
// little-endian fields, byte by byte, so files are the same on every host

void le_put_u16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
void le_put_u32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
void le_put_u64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
uint16_t le_get_u16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
uint32_t le_get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
uint64_t le_get_u64(const unsigned char *p) { return le_get_u32(p) | ((uint64_t)le_get_u32(p + 4) << 32); }

// ----------------------------------------------------------------------------
// pre-tokenisation

enum { BPE_LETTER, BPE_DIGIT, BPE_SPACE, BPE_OTHER };

int bpe_byte_class(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80) return BPE_LETTER;
    if (c >= '0' && c <= '9') return BPE_DIGIT;
    if (c == ' ' || (c >= '\t' && c <= '\r')) return BPE_SPACE;
    return BPE_OTHER;
}

// Length of the chunk that starts at s[0], given n >= 1 bytes (rules in the top comment).
size_t bpe_chunk_length(const unsigned char *s, size_t n) {
    size_t limit = n < TOKENIZER_MAX_CHUNK ? n : TOKENIZER_MAX_CHUNK;   // never scan further: linear time
    size_t start = (s[0] == ' ' && n >= 2 && bpe_byte_class(s[1]) != BPE_SPACE) ? 1 : 0;
    int cls = bpe_byte_class(s[start]);
    size_t i = start + 1;
    if (cls == BPE_SPACE) {
        while (i < limit && bpe_byte_class(s[i]) == BPE_SPACE) i++;
        if (i < n && bpe_byte_class(s[i]) != BPE_SPACE && i >= 2 && s[i - 1] == ' ') i--;   // it leads the next word
    } else {
        while (i < limit && (bpe_byte_class(s[i]) == cls ||
                             (cls == BPE_LETTER && s[i] == '\'' && i + 1 < n && bpe_byte_class(s[i + 1]) == BPE_LETTER)))
            i++;
    }
    return i;
}

// FNV-1a: a simple, decent hash for short byte strings.
uint64_t bpe_hash(const unsigned char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}

// ----------------------------------------------------------------------------
// ChunkCounts: every distinct chunk of the training text with its number of occurrences.
// Feed it document by document (story by story): chunks never span two documents.

typedef struct {
    uint64_t hash;
    uint64_t count;
    uint32_t offset;      // bytes live at ChunkCounts.bytes[offset .. offset + len)
    uint32_t len;
} ChunkEntry;

typedef struct {
    ChunkEntry *entries;  // (n_entries) distinct chunks, in order of first appearance
    size_t n_entries, cap_entries;
    int32_t *slots;       // (n_slots) hash table: entry index + 1, or 0 when empty
    size_t n_slots;
    unsigned char *bytes; // chunk bytes, back to back
    size_t n_bytes, cap_bytes;
} ChunkCounts;

void chunk_counts_init(ChunkCounts *cc) {
    memset(cc, 0, sizeof *cc);
    cc->n_slots = 1 << 16;
    cc->slots = xcalloc(cc->n_slots, sizeof *cc->slots);
}

void chunk_counts_free(ChunkCounts *cc) {
    free(cc->entries);
    free(cc->slots);
    free(cc->bytes);
    memset(cc, 0, sizeof *cc);
}

void chunk_counts_grow_slots(ChunkCounts *cc) {
    size_t n_slots = cc->n_slots * 2;
    int32_t *slots = xcalloc(n_slots, sizeof *slots);
    for (size_t e = 0; e < cc->n_entries; e++) {
        size_t s = cc->entries[e].hash & (n_slots - 1);
        while (slots[s]) s = (s + 1) & (n_slots - 1);
        slots[s] = (int32_t)(e + 1);
    }
    free(cc->slots);
    cc->slots = slots;
    cc->n_slots = n_slots;
}

// Adds one occurrence of the chunk s[0..n). Returns -1 past 2^31 distinct chunks or 4 GB of them.
int chunk_counts_add(ChunkCounts *cc, const unsigned char *s, size_t n) {
    uint64_t h = bpe_hash(s, n);
    size_t slot = h & (cc->n_slots - 1);
    while (cc->slots[slot]) {
        ChunkEntry *e = &cc->entries[cc->slots[slot] - 1];
        if (e->hash == h && e->len == n && memcmp(cc->bytes + e->offset, s, n) == 0) { e->count++; return 0; }
        slot = (slot + 1) & (cc->n_slots - 1);
    }
    if (cc->n_entries >= INT32_MAX - 1 || cc->n_bytes + n > UINT32_MAX)
        return fail("tokenizer training", "too many distinct chunks (train on a prefix with --max-mb)");
    if (cc->n_entries == cc->cap_entries) {
        cc->cap_entries = cc->cap_entries ? 2 * cc->cap_entries : 4096;
        cc->entries = realloc(cc->entries, cc->cap_entries * sizeof *cc->entries);
        if (!cc->entries) die("out of memory counting chunks");
    }
    if (cc->n_bytes + n > cc->cap_bytes) {
        cc->cap_bytes = cc->cap_bytes ? 2 * cc->cap_bytes : 1 << 16;
        cc->bytes = realloc(cc->bytes, cc->cap_bytes);
        if (!cc->bytes) die("out of memory counting chunks");
    }
    memcpy(cc->bytes + cc->n_bytes, s, n);
    cc->entries[cc->n_entries] = (ChunkEntry){h, 1, (uint32_t)cc->n_bytes, (uint32_t)n};
    cc->n_bytes += n;
    cc->slots[slot] = (int32_t)(++cc->n_entries);
    if (2 * cc->n_entries > cc->n_slots) chunk_counts_grow_slots(cc);
    return 0;
}

// Cuts one document into chunks and counts them.
int chunk_counts_add_text(ChunkCounts *cc, const char *text, size_t len) {
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        size_t n = bpe_chunk_length(s + i, len - i);
        if (chunk_counts_add(cc, s + i, n)) return -1;
        i += n;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// the tokenizer tables (built from the merge list by training and by the loader)

void tokenizer_free(Tokenizer *t) {
    free(t->merges);
    free(t->piece_start);
    free(t->pieces);
    free(t->rank_keys);
    free(t->rank_values);
    memset(t, 0, sizeof *t);
}

uint32_t bpe_pair_key(int left, int right) { return ((uint32_t)left << 16) | (uint32_t)right; }
size_t bpe_pair_slot(uint32_t key, uint32_t mask) { return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask; }

// Merge index of (left, right), or -1 when the pair is not a merge.
int tokenizer_merge_rank(const Tokenizer *t, int left, int right) {
    uint32_t key = bpe_pair_key(left, right);
    for (size_t s = bpe_pair_slot(key, t->rank_mask);; s = (s + 1) & t->rank_mask) {
        if (t->rank_values[s] < 0) return -1;
        if (t->rank_keys[s] == key) return t->rank_values[s];
    }
}

// Builds pieces and the merge lookup from t->merges / t->n_merges, checking what a corrupt file
// could get wrong: ids out of order, a merge using EOT, a duplicate merge, an overlong token.
int tokenizer_build(Tokenizer *t, const char *where) {
    int V = TOKENIZER_FIRST_MERGE + t->n_merges;
    t->vocab_size = V;
    uint32_t *len = xmalloc((size_t)V * sizeof *len);
    for (int id = 0; id < 256; id++) len[id] = 1;
    len[TOKEN_EOT] = sizeof TOKEN_EOT_TEXT - 1;
    size_t slots = 1024;
    while (slots < 2 * (size_t)t->n_merges) slots *= 2;
    t->rank_mask = (uint32_t)(slots - 1);
    t->rank_keys = xmalloc(slots * sizeof *t->rank_keys);
    t->rank_values = xmalloc(slots * sizeof *t->rank_values);
    for (size_t s = 0; s < slots; s++) t->rank_values[s] = -1;
    int status = 0;
    for (int m = 0; m < t->n_merges; m++) {
        int id = TOKENIZER_FIRST_MERGE + m, left = t->merges[2 * m], right = t->merges[2 * m + 1];
        if (left >= id || right >= id || left == TOKEN_EOT || right == TOKEN_EOT) {
            status = fail(where, "merge %d (%d, %d) must join two earlier ids other than <|endoftext|>, below %d", m, left, right, id);
            break;
        }
        len[id] = len[left] + len[right];
        if (len[id] > TOKENIZER_MAX_CHUNK) {
            status = fail(where, "merge %d makes a %u-byte token; tokens are at most %d bytes", m, len[id], TOKENIZER_MAX_CHUNK);
            break;
        }
        uint32_t key = bpe_pair_key(left, right);
        size_t s = bpe_pair_slot(key, t->rank_mask);
        while (t->rank_values[s] >= 0 && t->rank_keys[s] != key) s = (s + 1) & t->rank_mask;
        if (t->rank_values[s] >= 0) {
            status = fail(where, "merge %d repeats merge %d (%d, %d)", m, t->rank_values[s], left, right);
            break;
        }
        t->rank_keys[s] = key;
        t->rank_values[s] = m;
    }
    if (status) { free(len); return status; }
    // pieces: bytes, then EOT's text, then each merge = left piece + right piece
    t->piece_start = xmalloc(((size_t)V + 1) * sizeof *t->piece_start);
    size_t total = 0;
    for (int id = 0; id < V; id++) { t->piece_start[id] = (uint32_t)total; total += len[id]; }
    t->piece_start[V] = (uint32_t)total;   // at most 65536 * 64 bytes: fits
    t->pieces = xmalloc(total);
    for (int id = 0; id < 256; id++) t->pieces[id] = (char)id;
    memcpy(t->pieces + t->piece_start[TOKEN_EOT], TOKEN_EOT_TEXT, len[TOKEN_EOT]);
    for (int m = 0; m < t->n_merges; m++) {
        int id = TOKENIZER_FIRST_MERGE + m, left = t->merges[2 * m], right = t->merges[2 * m + 1];
        memcpy(t->pieces + t->piece_start[id], t->pieces + t->piece_start[left], len[left]);
        memcpy(t->pieces + t->piece_start[id] + len[left], t->pieces + t->piece_start[right], len[right]);
    }
    free(len);
    return 0;
}

// The bytes of token id (not NUL-terminated); "<|endoftext|>" for TOKEN_EOT.
const char *tokenizer_piece(const Tokenizer *t, int id, int *nbytes) {
    if (id < 0 || id >= t->vocab_size) { *nbytes = 0; return ""; }
    *nbytes = (int)(t->piece_start[id + 1] - t->piece_start[id]);
    return t->pieces + t->piece_start[id];
}

// ----------------------------------------------------------------------------
// training

// Replaces every (a, b), left to right and without overlap, by id in s[0..n); returns the new length.
int bpe_merge_pair(uint16_t *s, int n, int a, int b, int id) {
    int w = 0;
    for (int r = 0; r < n; r++) {
        if (r + 1 < n && s[r] == a && s[r + 1] == b) { s[w++] = (uint16_t)id; r++; }
        else s[w++] = s[r];
    }
    return w;
}

typedef struct {
    uint16_t *symbols;    // current tokens of this distinct chunk (shrinks as merges apply)
    int n;
    int visited;          // last merge that rewrote it (avoids doing a chunk twice per merge)
    uint64_t count;       // occurrences of the chunk in the corpus
} TrainWord;

typedef struct {
    uint32_t key;         // left << 16 | right
    int queued;           // last merge step that queued it for a heap push
    int64_t count;        // sum of the counts of the words, over each occurrence of the pair
    int32_t *words;       // words that contain the pair (some may have lost it since: rechecked)
    int n_words, cap_words;
} TrainPair;

typedef struct { int64_t count; uint32_t key; } HeapItem;

typedef struct {
    TrainPair *pairs; size_t n_pairs, cap_pairs;
    int32_t *slots; size_t n_slots;        // hash: pair key -> pair index + 1
    HeapItem *heap; size_t n_heap, cap_heap;
    uint32_t *touched; size_t n_touched, cap_touched;   // pairs created by the current merge
} PairTable;

TrainPair *bpe_pair_get(PairTable *pt, uint32_t key) {
    size_t mask = pt->n_slots - 1, s = bpe_pair_slot(key, (uint32_t)mask);
    while (pt->slots[s]) {
        TrainPair *p = &pt->pairs[pt->slots[s] - 1];
        if (p->key == key) return p;
        s = (s + 1) & mask;
    }
    if (pt->n_pairs == pt->cap_pairs) {
        pt->cap_pairs = pt->cap_pairs ? 2 * pt->cap_pairs : 1 << 14;
        pt->pairs = realloc(pt->pairs, pt->cap_pairs * sizeof *pt->pairs);
        if (!pt->pairs) die("out of memory training the tokenizer");
    }
    TrainPair *p = &pt->pairs[pt->n_pairs];
    *p = (TrainPair){.key = key, .queued = -1};
    pt->slots[s] = (int32_t)(++pt->n_pairs);
    if (2 * pt->n_pairs > pt->n_slots) {   // grow and rehash; p stays valid (pairs array unchanged)
        free(pt->slots);
        pt->n_slots *= 2;
        pt->slots = xcalloc(pt->n_slots, sizeof *pt->slots);
        for (size_t i = 0; i < pt->n_pairs; i++) {
            size_t t = bpe_pair_slot(pt->pairs[i].key, (uint32_t)(pt->n_slots - 1));
            while (pt->slots[t]) t = (t + 1) & (pt->n_slots - 1);
            pt->slots[t] = (int32_t)(i + 1);
        }
    }
    return p;
}

void bpe_pair_add_word(TrainPair *p, int32_t w) {
    if (p->n_words && p->words[p->n_words - 1] == w) return;   // already listed for this word
    if (p->n_words == p->cap_words) {
        p->cap_words = p->cap_words ? 2 * p->cap_words : 4;
        p->words = realloc(p->words, (size_t)p->cap_words * sizeof *p->words);
        if (!p->words) die("out of memory training the tokenizer");
    }
    p->words[p->n_words++] = w;
}

// heap order: larger count first; equal counts: smaller key, i.e. smaller (left, right), first
int bpe_heap_before(HeapItem a, HeapItem b) { return a.count > b.count || (a.count == b.count && a.key < b.key); }

void bpe_heap_push(PairTable *pt, int64_t count, uint32_t key) {
    if (pt->n_heap == pt->cap_heap) {
        pt->cap_heap = pt->cap_heap ? 2 * pt->cap_heap : 1 << 14;
        pt->heap = realloc(pt->heap, pt->cap_heap * sizeof *pt->heap);
        if (!pt->heap) die("out of memory training the tokenizer");
    }
    size_t i = pt->n_heap++;
    HeapItem item = {count, key};
    while (i > 0 && bpe_heap_before(item, pt->heap[(i - 1) / 2])) { pt->heap[i] = pt->heap[(i - 1) / 2]; i = (i - 1) / 2; }
    pt->heap[i] = item;
}

HeapItem bpe_heap_pop(PairTable *pt) {
    HeapItem top = pt->heap[0], last = pt->heap[--pt->n_heap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= pt->n_heap) break;
        if (c + 1 < pt->n_heap && bpe_heap_before(pt->heap[c + 1], pt->heap[c])) c++;
        if (!bpe_heap_before(pt->heap[c], last)) break;
        pt->heap[i] = pt->heap[c];
        i = c;
    }
    if (pt->n_heap) pt->heap[i] = last;
    return top;
}

// Adds sign * count to every adjacent pair of word w. When adding, pairs that contain new_id
// (just created by merge number step) get w in their word list and go to pt->touched once.
void bpe_word_count_pairs(PairTable *pt, const TrainWord *words, int32_t w, int sign, int new_id, int step) {
    const TrainWord *word = &words[w];
    for (int i = 0; i + 1 < word->n; i++) {
        TrainPair *p = bpe_pair_get(pt, bpe_pair_key(word->symbols[i], word->symbols[i + 1]));
        p->count += sign * (int64_t)word->count;
        if (sign < 0 || (word->symbols[i] != new_id && word->symbols[i + 1] != new_id)) continue;
        bpe_pair_add_word(p, w);
        if (p->queued == step) continue;
        p->queued = step;
        if (pt->n_touched == pt->cap_touched) {
            pt->cap_touched = pt->cap_touched ? 2 * pt->cap_touched : 256;
            pt->touched = realloc(pt->touched, pt->cap_touched * sizeof *pt->touched);
            if (!pt->touched) die("out of memory training the tokenizer");
        }
        pt->touched[pt->n_touched++] = p->key;
    }
}

// Learns vocab_size - 257 merges from counted chunks (see the top comment). If the corpus runs
// out of pairs occurring at least twice, training stops early and t->vocab_size is smaller than
// asked: callers should print t->vocab_size.
int tokenizer_train_counts(Tokenizer *t, const ChunkCounts *cc, int vocab_size) {
    memset(t, 0, sizeof *t);
    if (vocab_size < TOKENIZER_FIRST_MERGE || vocab_size > TOKENIZER_MAX_VOCAB)
        return fail("tokenizer training", "vocab size %d is out of range [%d, %d]", vocab_size, TOKENIZER_FIRST_MERGE, TOKENIZER_MAX_VOCAB);
    int max_merges = vocab_size - TOKENIZER_FIRST_MERGE;
    int n_words = (int)cc->n_entries;
    TrainWord *words = xmalloc((size_t)n_words * sizeof *words);
    uint16_t *symbols = xmalloc(cc->n_bytes * sizeof *symbols);
    for (int w = 0; w < n_words; w++) {
        const ChunkEntry *e = &cc->entries[w];
        words[w] = (TrainWord){symbols + e->offset, (int)e->len, -1, e->count};
        for (uint32_t i = 0; i < e->len; i++) words[w].symbols[i] = cc->bytes[e->offset + i];
    }
    PairTable pt = {0};
    pt.n_slots = 1 << 16;
    pt.slots = xcalloc(pt.n_slots, sizeof *pt.slots);
    for (int w = 0; w < n_words; w++)                  // initial pair counts, and where they occur
        for (int i = 0; i + 1 < words[w].n; i++) {
            TrainPair *p = bpe_pair_get(&pt, bpe_pair_key(words[w].symbols[i], words[w].symbols[i + 1]));
            p->count += (int64_t)words[w].count;
            bpe_pair_add_word(p, w);
        }
    for (size_t i = 0; i < pt.n_pairs; i++) bpe_heap_push(&pt, pt.pairs[i].count, pt.pairs[i].key);

    t->merges = xmalloc((size_t)(max_merges ? max_merges : 1) * 2 * sizeof *t->merges);
    int m = 0;
    while (m < max_merges && pt.n_heap) {
        // Lazy deletion: counts only grow through a push, so a heap entry is never below its
        // pair's true count; an entry that disagrees is stale and goes back with the true count.
        HeapItem top = bpe_heap_pop(&pt);
        TrainPair *best = bpe_pair_get(&pt, top.key);
        if (top.count != best->count) {
            if (best->count > 0) bpe_heap_push(&pt, best->count, best->key);
            continue;
        }
        if (best->count < 2) break;                    // merging a pair seen once only memorises
        int a = (int)(top.key >> 16), b = (int)(top.key & 0xFFFF), id = TOKENIZER_FIRST_MERGE + m;
        t->merges[2 * m] = (uint16_t)a;
        t->merges[2 * m + 1] = (uint16_t)b;
        // (a, b) gets no new occurrences during this merge, so its word list is stable. Copy it
        // out anyway: bpe_pair_get() below may move the pairs array.
        int n_list = best->n_words;
        int32_t *list = best->words;
        best->words = NULL;
        best->n_words = best->cap_words = 0;
        pt.n_touched = 0;
        for (int k = 0; k < n_list; k++) {
            int32_t w = list[k];
            TrainWord *word = &words[w];
            if (word->visited == m) continue;
            word->visited = m;
            int has_pair = 0;
            for (int i = 0; i + 1 < word->n && !has_pair; i++) has_pair = word->symbols[i] == a && word->symbols[i + 1] == b;
            if (!has_pair) continue;
            // remove the word's pairs, merge, add them back: net change only around the merges
            bpe_word_count_pairs(&pt, words, w, -1, id, m);
            word->n = bpe_merge_pair(word->symbols, word->n, a, b, id);
            bpe_word_count_pairs(&pt, words, w, +1, id, m);
        }
        free(list);
        for (size_t i = 0; i < pt.n_touched; i++) {
            TrainPair *p = bpe_pair_get(&pt, pt.touched[i]);
            if (p->count > 0) bpe_heap_push(&pt, p->count, p->key);
        }
        m++;
    }
    for (size_t i = 0; i < pt.n_pairs; i++) free(pt.pairs[i].words);
    free(pt.pairs);
    free(pt.slots);
    free(pt.heap);
    free(pt.touched);
    free(symbols);
    free(words);
    t->n_merges = m;
    if (tokenizer_build(t, "tokenizer training")) { tokenizer_free(t); return -1; }
    return 0;
}

// Trains on one document (a story boundary inside text is not special: use ChunkCounts and
// tokenizer_train_counts() to train on many stories).
int tokenizer_train(Tokenizer *t, const char *text, size_t len, int vocab_size) {
    ChunkCounts cc;
    chunk_counts_init(&cc);
    int r = chunk_counts_add_text(&cc, text, len);
    if (r == 0) r = tokenizer_train_counts(t, &cc, vocab_size);
    chunk_counts_free(&cc);
    return r;
}

// ----------------------------------------------------------------------------
// encoding and decoding

// Encodes one chunk s[0..n) (n <= TOKENIZER_MAX_CHUNK) into out; returns the number of tokens.
size_t bpe_encode_chunk(const Tokenizer *t, const unsigned char *s, int n, uint16_t *out) {
    for (int i = 0; i < n; i++) out[i] = s[i];
    while (n >= 2) {
        int best = -1;
        for (int i = 0; i + 1 < n; i++) {
            int r = tokenizer_merge_rank(t, out[i], out[i + 1]);
            if (r >= 0 && (best < 0 || r < best)) best = r;
        }
        if (best < 0) break;
        n = bpe_merge_pair(out, n, t->merges[2 * best], t->merges[2 * best + 1], TOKENIZER_FIRST_MERGE + best);
    }
    return (size_t)n;
}

// Encodes text[0..len) into out, which has room for len tokens (a token covers >= 1 byte).
// Returns the number of tokens. Never emits TOKEN_EOT.
size_t tokenizer_encode(const Tokenizer *t, const char *text, size_t len, uint16_t *out) {
    const unsigned char *s = (const unsigned char *)text;
    size_t n_out = 0;
    for (size_t i = 0; i < len;) {
        size_t n = bpe_chunk_length(s + i, len - i);
        n_out += bpe_encode_chunk(t, s + i, (int)n, out + n_out);
        i += n;
    }
    return n_out;
}

// Decodes n tokens into a fresh NUL-terminated buffer (*len excludes the NUL). Ids outside the
// vocabulary decode to nothing (loaders reject them long before this).
char *tokenizer_decode(const Tokenizer *t, const uint16_t *tokens, size_t n, size_t *len) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < t->vocab_size) total += t->piece_start[tokens[i] + 1] - t->piece_start[tokens[i]];
    char *out = xmalloc(total + 1);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        int nbytes;
        const char *piece = tokenizer_piece(t, tokens[i], &nbytes);
        memcpy(out + pos, piece, (size_t)nbytes);
        pos += (size_t)nbytes;
    }
    out[pos] = 0;
    *len = pos;
    return out;
}

// ----------------------------------------------------------------------------
// file format (all integers little-endian):
//   offset  size  field
//        0     8  magic "OUROTOKN"
//        8     4  uint32 version (1)
//       12     4  uint32 vocab_size V, 257 <= V <= 65536
//       16     4  uint32 n_merges = V - 257
//       20     4  uint32 eot_id = 256 (id of <|endoftext|>)
//       24  4*n_merges  merges: uint16 left, uint16 right; merge i creates id 257 + i
// File length is exactly 24 + 4 * n_merges. Token bytes follow from the merges (ids 0..255 are
// the bytes, 256 is "<|endoftext|>"); the chunking rule is part of version 1.

int tokenizer_save(const Tokenizer *t, const char *path) {
    unsigned char hdr[TOKENIZER_HEADER_BYTES];
    memcpy(hdr, TOKENIZER_MAGIC, 8);
    le_put_u32(hdr + 8, TOKENIZER_VERSION);
    le_put_u32(hdr + 12, (uint32_t)t->vocab_size);
    le_put_u32(hdr + 16, (uint32_t)t->n_merges);
    le_put_u32(hdr + 20, TOKEN_EOT);
    AtomicFile af;
    if (atomic_open(&af, path)) return -1;
    atomic_write(&af, hdr, sizeof hdr);
    for (int m = 0; m < t->n_merges; m++) {
        unsigned char rec[4];
        le_put_u16(rec, t->merges[2 * m]);
        le_put_u16(rec + 2, t->merges[2 * m + 1]);
        atomic_write(&af, rec, 4);
    }
    return atomic_commit(&af);
}

// Parses a tokenizer file image held in memory (e.g. embedded in a model export): checks every
// header field and the exact length before allocating, then the merges (tokenizer_build).
// name is used in error messages.
int tokenizer_load_memory(Tokenizer *t, const void *data, size_t len, const char *name) {
    memset(t, 0, sizeof *t);
    const unsigned char *p = data;
    if (len >= 8 && memcmp(p, TOKENIZER_MAGIC, 8) != 0) return fail(name, "not an ouro tokenizer (bad magic)");
    if (len < TOKENIZER_HEADER_BYTES) return fail(name, "truncated: %zu bytes, a tokenizer header is %d", len, TOKENIZER_HEADER_BYTES);
    uint32_t version = le_get_u32(p + 8), V = le_get_u32(p + 12), n_merges = le_get_u32(p + 16), eot = le_get_u32(p + 20);
    if (version != TOKENIZER_VERSION) return fail(name, "version %u, this build reads %d", version, TOKENIZER_VERSION);
    if (V < TOKENIZER_FIRST_MERGE || V > TOKENIZER_MAX_VOCAB)
        return fail(name, "vocab_size %u is out of range [%d, %d]", V, TOKENIZER_FIRST_MERGE, TOKENIZER_MAX_VOCAB);
    if (n_merges != V - TOKENIZER_FIRST_MERGE) return fail(name, "n_merges %u, vocab_size %u implies %u", n_merges, V, V - TOKENIZER_FIRST_MERGE);
    if (eot != TOKEN_EOT) return fail(name, "eot_id %u, this build expects %d", eot, TOKEN_EOT);
    if (len != TOKENIZER_HEADER_BYTES + 4 * (size_t)n_merges)
        return fail(name, "%zu bytes, the header implies %zu (truncated or padded file)", len, TOKENIZER_HEADER_BYTES + 4 * (size_t)n_merges);
    t->n_merges = (int)n_merges;
    t->merges = xmalloc(2 * (size_t)n_merges * sizeof *t->merges + 1);
    for (uint32_t m = 0; m < 2 * n_merges; m++) t->merges[m] = le_get_u16(p + TOKENIZER_HEADER_BYTES + 2 * m);
    if (tokenizer_build(t, name)) { tokenizer_free(t); return -1; }
    return 0;
}

int tokenizer_load(Tokenizer *t, const char *path) {
    memset(t, 0, sizeof *t);
    size_t max_bytes = TOKENIZER_HEADER_BYTES + 4 * (size_t)(TOKENIZER_MAX_VOCAB - TOKENIZER_FIRST_MERGE);
    long long size = file_size(path);
    if (size < 0) return -1;
    if ((unsigned long long)size > max_bytes)
        return fail(path, "%lld bytes: not an ouro tokenizer (the largest, vocab 65536, has %zu bytes)", size, max_bytes);
    char *buf = NULL;
    size_t len = 0;
    if (read_file(path, max_bytes, &buf, &len)) return -1;
    int r = tokenizer_load_memory(t, buf, len, path);
    free(buf);
    return r;
}

#endif // OURO_TOKENIZER_C
