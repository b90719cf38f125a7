// test_data.c: tests of the data pipeline (tokenizer.c, data.c). Included by test_all.c after
// its harness (check, skip, shared_data_dir) and after tinystories/data.c; run_data_tests()
// runs them all. Temporary files are ouro_test_data_* in the tests' scratch folder.

// ----------------------------------------------------------------------------
// fixtures

// Every story a reader delivers, back to back in one buffer.
typedef struct {
    StrBuf text;
    size_t *start, *len;
    size_t n, cap;
} StoryList;

int story_list_add(void *ctx, const char *s, size_t len) {
    StoryList *sl = ctx;
    if (sl->n == sl->cap) {
        sl->cap = sl->cap ? 2 * sl->cap : 64;
        sl->start = realloc(sl->start, sl->cap * sizeof *sl->start);
        sl->len = realloc(sl->len, sl->cap * sizeof *sl->len);
        if (!sl->start || !sl->len) die("out of memory in test");
    }
    sl->start[sl->n] = sl->text.len;
    sl->len[sl->n++] = len;
    sb_append(&sl->text, s, len);
    return 0;
}

void story_list_free(StoryList *sl) {
    free(sl->text.data);
    free(sl->start);
    free(sl->len);
    memset(sl, 0, sizeof *sl);
}

int story_is(const StoryList *sl, size_t i, const char *expected) {
    return i < sl->n && sl->len[i] == strlen(expected) && memcmp(sl->text.data + sl->start[i], expected, sl->len[i]) == 0;
}

void data_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) die("cannot write test file %s", path);
}

// A small English-like training text: a few sentences with random names and objects.
char *data_training_text(size_t *len) {
    static const char *words[] = {"the", "little", "girl", "named", "Lily", "saw", "a", "big", "red", "ball",
                                  "and", "she", "was", "happy", "Tom", "said", "\"Let's", "play!\"", "they", "ran"};
    StrBuf b = {0};
    Rng rng;
    rng_seed(&rng, 7);
    for (int s = 0; s < 3000; s++) {
        int n = 3 + (int)rng_below(&rng, 10);
        for (int w = 0; w < n; w++) {
            if (w) sb_push(&b, ' ');
            const char *word = words[rng_below(&rng, 20)];
            sb_append(&b, word, strlen(word));
        }
        sb_append(&b, s % 5 == 4 ? ".\n" : ". ", 2);
    }
    *len = b.len;
    return b.data;
}

// Encodes and decodes text; returns 1 when decode(encode(text)) == text and the tokens are
// valid (fewer than bytes, ids below the vocabulary size, no <|endoftext|>).
int tok_round_trips(const Tokenizer *t, const char *text, size_t len) {
    uint16_t *tokens = xmalloc((len ? len : 1) * sizeof *tokens);
    size_t n = tokenizer_encode(t, text, len, tokens), back_len;
    int ok = n <= len;
    for (size_t i = 0; i < n; i++) ok &= tokens[i] < t->vocab_size && tokens[i] != TOKEN_EOT;
    char *back = tokenizer_decode(t, tokens, n, &back_len);
    ok &= back_len == len && memcmp(back, text, len) == 0;
    free(back);
    free(tokens);
    return ok;
}

// ----------------------------------------------------------------------------
// tokenizer

// The documented chunking rule, on the example of tokenizer.c's top comment and on long runs.
static void test_tokenizer_chunks(void) {
    static const struct { const char *text; const char *chunks[8]; } cases[] = {
        {"Hi,  Tom!\n", {"Hi", ",", " ", " Tom", "!", "\n"}},
        {"Lily's 12 cats\n  ran", {"Lily's", " 12", " cats", "\n ", " ran"}},
        {"\"Mom, \xe2\x80\x9cyes\xe2\x80\x9d!\" ", {"\"", "Mom", ",", " \xe2\x80\x9cyes\xe2\x80\x9d", "!\"", " "}},
    };
    for (int c = 0; c < 3; c++) {
        const unsigned char *s = (const unsigned char *)cases[c].text;
        size_t len = strlen(cases[c].text), pos = 0;
        int k = 0, ok = 1;
        for (; pos < len && k < 8 && cases[c].chunks[k]; k++) {
            size_t n = bpe_chunk_length(s + pos, len - pos);
            ok &= n == strlen(cases[c].chunks[k]) && memcmp(s + pos, cases[c].chunks[k], n) == 0;
            pos += n;
        }
        check(ok && pos == len && (k == 8 || !cases[c].chunks[k]), "chunks of case %d differ from the documented rule", c);
    }
    // runs longer than TOKENIZER_MAX_CHUNK are cut every TOKENIZER_MAX_CHUNK bytes
    char run[200];
    memset(run, 'a', 150);
    size_t n1 = bpe_chunk_length((const unsigned char *)run, 150), n2 = bpe_chunk_length((const unsigned char *)run + 64, 86);
    check(n1 == TOKENIZER_MAX_CHUNK && n2 == TOKENIZER_MAX_CHUNK, "a 150-letter run is cut into %zu + %zu + ..., expected 64 + 64", n1, n2);
}

// Encoding merges by priority, the lowest merge index first: with (a, b) -> 257 and (b, c) -> 258,
// "abc" is {257, 'c'}; the other order would give {'a', 258}. Round trips hold with any order.
static void test_tokenizer_merge_order(void) {
    Tokenizer t;
    memset(&t, 0, sizeof t);
    t.n_merges = 2;
    t.merges = xmalloc(4 * sizeof *t.merges);
    t.merges[0] = 'a'; t.merges[1] = 'b'; t.merges[2] = 'b'; t.merges[3] = 'c';
    if (check(tokenizer_build(&t, "merge order") == 0, "merge order: %s", ouro_error)) {
        uint16_t out[3];
        size_t n = tokenizer_encode(&t, "abc", 3, out);
        check(n == 2 && out[0] == TOKENIZER_FIRST_MERGE && out[1] == 'c',
              "merges (a,b) then (b,c): \"abc\" encodes to %zu tokens %d %d, expected %d 'c'", n, out[0],
              n > 1 ? out[1] : -1, TOKENIZER_FIRST_MERGE);
    }
    tokenizer_free(&t);
}

static void test_tokenizer_round_trip_random(void) {
    size_t text_len;
    char *text = data_training_text(&text_len);
    Tokenizer t;
    if (!check(tokenizer_train(&t, text, text_len, 300) == 0, "tokenizer_train: %s", ouro_error)) { free(text); return; }
    check(t.vocab_size == 300, "vocab_size %d after training for 300", t.vocab_size);
    check(tok_round_trips(&t, "", 0), "empty input does not round trip");
    check(tok_round_trips(&t, text, text_len), "the training text does not round trip");
    // invalid UTF-8 (lone lead byte, bad continuation, encoded surrogate, above U+10FFFF), NUL,
    // the separator's text, quotes, \r\n, runs of spaces
    static const struct { const char *s; size_t n; } tricky[] = {
        {"\xff", 1}, {"\xc3", 1}, {"\xc3\x28", 2}, {"\xed\xa0\x80", 3}, {"\xf4\x90\x80\x80", 4}, {"a\0b", 3},
        {"<|endoftext|>", 13}, {"Lily's  \"ball\"\r\n\n\t x", 20}, {"   ", 3}, {"'", 1}, {"''a'b'", 6}, {"\x80\x80 the", 6}};
    for (int i = 0; i < 12; i++) check(tok_round_trips(&t, tricky[i].s, tricky[i].n), "tricky input %d does not round trip", i);
    // random byte strings: fully random, and drawn from an alphabet rich in chunk boundaries
    static const char alphabet[] = " \n'\"the Lily.!0123\x80\xc3\xa9\xff";
    Rng rng;
    rng_seed(&rng, 42);
    char buf[3000];
    int failures = 0;
    for (int k = 0; k < 400; k++) {
        size_t len = rng_below(&rng, sizeof buf);
        for (size_t i = 0; i < len; i++)
            buf[i] = k % 2 ? (char)rng_below(&rng, 256) : alphabet[rng_below(&rng, sizeof alphabet - 1)];
        failures += !tok_round_trips(&t, buf, len);
    }
    check(failures == 0, "%d of 400 random byte strings do not round trip", failures);
    // " the" is the most frequent chunk of the text: after training it must be one token
    uint16_t tokens[8];
    size_t n = tokenizer_encode(&t, " the", 4, tokens);
    check(n == 1, "\" the\" encodes to %zu tokens, expected 1", n);
    tokenizer_free(&t);
    free(text);
}

static void test_tokenizer_deterministic_save_load(void) {
    size_t text_len;
    char *text = data_training_text(&text_len);
    Tokenizer a, b, c;
    int ok = tokenizer_train(&a, text, text_len, 600) == 0 && tokenizer_train(&b, text, text_len, 600) == 0;
    if (!check(ok, "tokenizer_train: %s", ouro_error)) { free(text); return; }
    check(a.n_merges == b.n_merges && memcmp(a.merges, b.merges, 4 * (size_t)a.n_merges) == 0,
          "two trainings on the same text give different merges");
    const char *path = "ouro_test_data_tok.bin";
    if (check(tokenizer_save(&a, path) == 0 && tokenizer_load(&c, path) == 0, "tokenizer save/load: %s", ouro_error)) {
        check(c.vocab_size == a.vocab_size && c.n_merges == a.n_merges && memcmp(a.merges, c.merges, 4 * (size_t)a.n_merges) == 0,
              "loaded tokenizer differs from the saved one (vocab %d vs %d)", c.vocab_size, a.vocab_size);
        uint16_t *ta = xmalloc(text_len * sizeof *ta), *tc = xmalloc(text_len * sizeof *tc);
        size_t na = tokenizer_encode(&a, text, text_len, ta), nc = tokenizer_encode(&c, text, text_len, tc);
        check(na == nc && memcmp(ta, tc, na * sizeof *ta) == 0, "loaded tokenizer encodes differently (%zu vs %zu tokens)", nc, na);
        int nbytes;
        const char *eot = tokenizer_piece(&c, TOKEN_EOT, &nbytes);
        check(nbytes == 13 && memcmp(eot, "<|endoftext|>", 13) == 0, "piece of TOKEN_EOT is not <|endoftext|>");
        free(ta);
        free(tc);
        tokenizer_free(&c);
    }
    remove(path);
    // more merges asked than the text supports: training stops early, the result still works
    Tokenizer small;
    if (check(tokenizer_train(&small, "abcabc abd", 10, 5000) == 0, "tokenizer_train on a tiny text: %s", ouro_error)) {
        check(small.vocab_size > 257 && small.vocab_size < 5000, "tiny text: vocab_size %d, expected early stop", small.vocab_size);
        check(tok_round_trips(&small, "abcabd abc", 10), "tiny tokenizer does not round trip");
        tokenizer_free(&small);
    }
    check(tokenizer_train(&small, text, text_len, 256) != 0, "vocab 256 accepted (minimum is 257)");
    check(tokenizer_train(&small, text, text_len, 65537) != 0, "vocab 65537 accepted (ids are uint16)");
    // merges never cross a story boundary: "aaaa" and "bbbb" trained as separate stories
    ChunkCounts cc;
    chunk_counts_init(&cc);
    for (int i = 0; i < 50; i++) { chunk_counts_add_text(&cc, "aaaa", 4); chunk_counts_add_text(&cc, "bbbb", 4); }
    if (check(tokenizer_train_counts(&small, &cc, 300) == 0, "tokenizer_train_counts: %s", ouro_error)) {
        int crossing = 0, nbytes;
        for (int id = TOKENIZER_FIRST_MERGE; id < small.vocab_size; id++) {
            const char *p = tokenizer_piece(&small, id, &nbytes);
            crossing += memchr(p, 'a', (size_t)nbytes) && memchr(p, 'b', (size_t)nbytes);
        }
        check(crossing == 0, "%d tokens join the end of one story to the next", crossing);
        tokenizer_free(&small);
    }
    chunk_counts_free(&cc);
    tokenizer_free(&a);
    tokenizer_free(&b);
    free(text);
}

// Writes a copy of the valid tokenizer file with one change and checks that loading fails.
static void expect_tokenizer_rejected(const unsigned char *good, size_t len, size_t at, const void *patch, size_t patch_len,
                                      long new_len, const char *what) {
    const char *path = "ouro_test_data_bad_tok.bin";
    unsigned char *bad = xmalloc(len + 8);
    memcpy(bad, good, len);
    memset(bad + len, 0, 8);
    if (patch) memcpy(bad + at, patch, patch_len);
    data_write_file(path, bad, new_len >= 0 ? (size_t)new_len : len);
    Tokenizer t;
    int r = tokenizer_load(&t, path);
    check(r != 0 && strstr(ouro_error, path), "tokenizer with %s: loaded (or the error does not name the file: '%s')", what,
          r ? ouro_error : "");
    if (r == 0) tokenizer_free(&t);
    free(bad);
    remove(path);
}

static void test_tokenizer_rejects_corrupt_files(void) {
    size_t text_len;
    char *text = data_training_text(&text_len);
    Tokenizer t;
    const char *path = "ouro_test_data_good_tok.bin";
    char *good;
    size_t len;
    if (!check(tokenizer_train(&t, text, text_len, 300) == 0 && tokenizer_save(&t, path) == 0 &&
               read_file(path, 1 << 20, &good, &len) == 0, "tokenizer fixture: %s", ouro_error)) { free(text); return; }
    const unsigned char *g = (const unsigned char *)good;
    unsigned char u32[4], u16[2];
    expect_tokenizer_rejected(g, len, 0, "OUROTOKX", 8, -1, "a bad magic");
    le_put_u32(u32, 2);
    expect_tokenizer_rejected(g, len, 8, u32, 4, -1, "version 2");
    le_put_u32(u32, 70000);
    expect_tokenizer_rejected(g, len, 12, u32, 4, -1, "vocab_size 70000");
    le_put_u32(u32, 10);
    expect_tokenizer_rejected(g, len, 16, u32, 4, -1, "n_merges that disagrees with vocab_size");
    le_put_u32(u32, 300);
    expect_tokenizer_rejected(g, len, 20, u32, 4, -1, "eot_id 300");
    expect_tokenizer_rejected(g, len, 0, NULL, 0, (long)len - 4, "one merge cut off (truncated)");
    expect_tokenizer_rejected(g, len, 0, NULL, 0, (long)len + 4, "4 extra bytes");
    expect_tokenizer_rejected(g, len, 0, NULL, 0, 10, "a truncated header");
    le_put_u16(u16, 257);
    expect_tokenizer_rejected(g, len, 24, u16, 2, -1, "merge 0 using its own id");
    le_put_u16(u16, TOKEN_EOT);
    expect_tokenizer_rejected(g, len, 24 + 4 * 5 + 2, u16, 2, -1, "merge 5 using <|endoftext|>");
    expect_tokenizer_rejected(g, len, 28, g + 24, 4, -1, "merge 1 equal to merge 0");
    // a chain of self-merges "a"+"a" -> 2, 4, ..., 128 bytes: longer than any chunk
    unsigned char chain[24 + 4 * 7];
    memcpy(chain, "OUROTOKN", 8);
    le_put_u32(chain + 8, 1);
    le_put_u32(chain + 12, 257 + 7);
    le_put_u32(chain + 16, 7);
    le_put_u32(chain + 20, TOKEN_EOT);
    for (int m = 0; m < 7; m++) {
        le_put_u16(chain + 24 + 4 * m, (uint16_t)(m ? 256 + m : 'a'));
        le_put_u16(chain + 26 + 4 * m, (uint16_t)(m ? 256 + m : 'a'));
    }
    expect_tokenizer_rejected(chain, sizeof chain, 0, NULL, 0, -1, "a 128-byte token");
    // the same checks on an image in memory (a tokenizer embedded in a model export)
    Tokenizer mem;
    if (check(tokenizer_load_memory(&mem, good, len, "embedded") == 0 && mem.vocab_size == t.vocab_size,
              "tokenizer_load_memory on a good image: %s", ouro_error))
        tokenizer_free(&mem);
    check(tokenizer_load_memory(&mem, good, len - 2, "embedded") != 0 && strstr(ouro_error, "embedded: "),
          "tokenizer_load_memory accepted an image 2 bytes short (or did not name it): '%s'", ouro_error);
    Tokenizer missing;
    check(tokenizer_load(&missing, "ouro_test_data_missing_tok.bin") != 0 && strstr(ouro_error, "missing_tok"),
          "a missing tokenizer file is not reported by name: '%s'", ouro_error);
    remove(path);
    free(good);
    tokenizer_free(&t);
    free(text);
}

// The real TinyStories sample: story count, exact round trip of every story, compression.
static void test_tokenizer_real_sample(void) {
    const char *dir = shared_data_dir();
    if (!dir) { skip("../shared/data/tinystories is absent: real-sample tokenizer test not run"); return; }
    char path[512];
    snprintf(path, sizeof path, "%s/tinystories_train_head_2MiB.txt", dir);
    StoryList sl = {0};
    StoryStats st = {0};
    if (!check(read_stories(path, story_list_add, &sl, &st) == 0, "reading the sample: %s", ouro_error)) return;
    check(sl.n == 2316, "stories in the 2 MiB sample: %zu, expected 2316", sl.n);
    check(st.truncated == 1 && st.empty == 0, "sample: %llu truncated and %llu empty stories dropped, expected 1 and 0",
          (unsigned long long)st.truncated, (unsigned long long)st.empty);
    check(sl.n > 0 && !memcmp(sl.text.data, "One day, a little girl named Lily", 33),
          "the first story does not start with \"One day, a little girl named Lily\"");
    ChunkCounts cc;
    chunk_counts_init(&cc);
    for (size_t i = 0; i < sl.n; i++) chunk_counts_add_text(&cc, sl.text.data + sl.start[i], sl.len[i]);
    Tokenizer t;
    if (check(tokenizer_train_counts(&t, &cc, 1024) == 0, "training on the sample: %s", ouro_error)) {
        size_t bad = 0, n_tokens = 0;
        uint16_t *tokens = xmalloc(sl.text.len * sizeof *tokens);
        for (size_t i = 0; i < sl.n; i++) {
            bad += !tok_round_trips(&t, sl.text.data + sl.start[i], sl.len[i]);
            n_tokens += tokenizer_encode(&t, sl.text.data + sl.start[i], sl.len[i], tokens);
        }
        check(bad == 0, "%zu of %zu sample stories do not round trip", bad, sl.n);
        double bytes_per_token = (double)sl.text.len / (double)n_tokens;
        check(bytes_per_token > 2.8, "vocab 1024 on its own training text: %.3f bytes/token, expected > 2.8", bytes_per_token);
        // held-out text (the validation head, one stream with mojibake): round trip and compression
        char *valid;
        size_t valid_len;
        snprintf(path, sizeof path, "%s/tinystories_valid_head.txt", dir);
        if (check(read_file(path, 1 << 24, &valid, &valid_len) == 0, "reading the validation sample: %s", ouro_error)) {
            check(tok_round_trips(&t, valid, valid_len), "the validation sample does not round trip");
            uint16_t *vt = xmalloc(valid_len * sizeof *vt);
            double bpt = (double)valid_len / (double)tokenizer_encode(&t, valid, valid_len, vt);
            check(bpt > 2.7, "vocab 1024 on held-out text: %.3f bytes/token, expected > 2.7", bpt);
            free(vt);
            free(valid);
        }
        free(tokens);
        tokenizer_free(&t);
    }
    chunk_counts_free(&cc);
    story_list_free(&sl);
}

// ----------------------------------------------------------------------------
// story readers

static void test_text_reader(void) {
    const char *text = "A\r\n<|endoftext|>\r\n\r\n  <|endoftext|>  \n  B line1\r\nB line2 <|endoftext|> x\n\n"
                       "<|endoftext|>\nC tail";
    StoryList sl = {0};
    StoryStats st = {0};
    check(read_text_stories_mem("t1", text, strlen(text), story_list_add, &sl, &st) == 0, "text reader: %s", ouro_error);
    check(sl.n == 2 && story_is(&sl, 0, "A") && story_is(&sl, 1, "B line1\nB line2 <|endoftext|> x"),
          "text reader: %zu stories, expected \"A\" and the two B lines", sl.n);
    check(st.empty == 1 && st.truncated == 1, "text reader: %llu empty, %llu truncated, expected 1 and 1",
          (unsigned long long)st.empty, (unsigned long long)st.truncated);
    story_list_free(&sl);
    // a final story that ends with a newline is complete; a final separator without newline counts
    const char *endings[] = {"x\n<|endoftext|>\nC tail\n", "x\n<|endoftext|>\nC tail\n<|endoftext|>", "", "\n\n  \n"};
    const size_t expected[] = {2, 2, 0, 0};
    for (int i = 0; i < 4; i++) {
        StoryStats s2 = {0};
        check(read_text_stories_mem("t2", endings[i], strlen(endings[i]), story_list_add, &sl, &s2) == 0 && sl.n == expected[i] &&
              s2.truncated == 0, "text ending %d: %zu stories, %llu truncated; expected %zu and 0", i, sl.n,
              (unsigned long long)s2.truncated, expected[i]);
        story_list_free(&sl);
    }
    // an enormous line (6 MB, no space) is one story, and encodes in linear time
    size_t big = 6u << 20;
    char *huge = xmalloc(big + 32);
    memset(huge, 'z', big);
    memcpy(huge + big, "\n<|endoftext|>\n", 15);
    st = (StoryStats){0};
    check(read_text_stories_mem("huge", huge, big + 15, story_list_add, &sl, &st) == 0 && sl.n == 1 && sl.len[0] == big,
          "enormous line: %zu stories of %zu bytes, expected 1 of %zu", sl.n, sl.n ? sl.len[0] : 0, big);
    Tokenizer t;
    if (check(tokenizer_train(&t, "zz zzzz zz zzzz", 15, 260) == 0, "tokenizer_train: %s", ouro_error)) {
        check(tok_round_trips(&t, huge, big), "enormous line does not round trip");
        tokenizer_free(&t);
    }
    story_list_free(&sl);
    free(huge);
    // the file reader (64 KB windows) and the memory reader agree, CRLF across window edges included
    StrBuf doc = {0};
    Rng rng;
    rng_seed(&rng, 3);
    while (doc.len < 300000) {
        int words = (int)rng_below(&rng, 400);
        for (int w = 0; w < words; w++) {
            const char *word = rng_below(&rng, 9) ? "word " : "end.\r\n";
            sb_append(&doc, word, strlen(word));
        }
        const char *separator = rng_below(&rng, 2) ? "\n<|endoftext|>\n" : "\r\n<|endoftext|>\r\n";
        sb_append(&doc, separator, strlen(separator));
    }
    const char *path = "ouro_test_data_stories.txt";
    data_write_file(path, doc.data, doc.len);
    StoryList from_file = {0}, from_mem = {0};
    StoryStats s3 = {0}, s4 = {0};
    int ok = read_stories(path, story_list_add, &from_file, &s3) == 0 &&
             read_text_stories_mem(path, doc.data, doc.len, story_list_add, &from_mem, &s4) == 0;
    check(ok && from_file.n == from_mem.n && from_file.n > 100 && from_file.text.len == from_mem.text.len &&
          memcmp(from_file.text.data, from_mem.text.data, from_mem.text.len) == 0 && !memchr(from_file.text.data, '\r', from_file.text.len),
          "file reader and memory reader disagree (%zu vs %zu stories) or kept a \\r", from_file.n, from_mem.n);
    remove(path);
    story_list_free(&from_file);
    story_list_free(&from_mem);
    free(doc.data);
    // a missing file is reported by name
    check(read_stories("ouro_test_data_missing.txt", story_list_add, &sl, &st) != 0 && strstr(ouro_error, "ouro_test_data_missing.txt"),
          "missing input file: error '%s' does not name it", ouro_error);
}

static void test_json_reader(void) {
    const char *json =
        " [ {\"story\": \"  Line1\\nLine2 \\\"quoted\\\" back\\\\slash \\/ tab\\t \\u00e9 \\u20AC \\ud83d\\ude00 end \",\n"
        "    \"instruction\": {\"words\": [\"a\", 1, -2.5e+3, 0.5, 1E2, true, false, null, {\"deep\": [[]]}]}},\n"
        "   {\"summary\": \"no story in this record\"},\n"
        "   {\"st\\u006fry\": \"Key with an escape\"},\n"
        "   {\"story\": \"\\b\\f\\r ok\", \"source\": \"GPT-4\"}, {\"story\": \"   \"} ]\n"
        "[] [{\"story\":\"second array\"}]\n";
    StoryList sl = {0};
    StoryStats st = {0};
    int r = read_json_stories_mem("tricky.json", json, strlen(json), story_list_add, &sl, &st);
    check(r == 0, "tricky JSON rejected: %s", ouro_error);
    check(sl.n == 4, "tricky JSON: %zu stories, expected 4", sl.n);
    check(story_is(&sl, 0, "Line1\nLine2 \"quoted\" back\\slash / tab\t \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 end"),
          "tricky JSON: escapes decoded wrongly in story 0");
    check(story_is(&sl, 1, "Key with an escape"), "tricky JSON: the key \"st\\u006fry\" is not recognised as \"story\"");
    check(story_is(&sl, 2, "\b\f\r ok"), "tricky JSON: \\b\\f\\r decoded wrongly");
    check(story_is(&sl, 3, "second array"), "tricky JSON: the second top-level array is not read");
    check(st.without_story == 1 && st.empty == 1, "tricky JSON: %llu records without story, %llu empty; expected 1 and 1",
          (unsigned long long)st.without_story, (unsigned long long)st.empty);
    story_list_free(&sl);
    // malformed inputs: each must be rejected with the name and a byte offset, never crash
    static const char *bad[] = {
        "", "   ", "[", "[{\"story\": \"abc", "[{\"story\": \"abc\"}", "[{\"story\": \"a\\x\"}]", "[{\"story\": \"\\ud83d\"}]",
        "[{\"story\": \"\\ud83d\\u0041\"}]", "[{\"story\": \"\\ude00\"}]", "[{\"story\": \"\\u12G4\"}]", "[{\"story\": \"a\nb\"}]",
        "[{\"story\": \"a\"},]", "[{\"story\": \"a\"} {\"story\": \"b\"}]", "[{\"story\": 5}]", "[{\"story\": \"a\", \"story\": \"b\"}]",
        "[\"just a string\"]", "{\"story\": \"a\"}", "[{\"story\": \"a\", \"n\": 01}]", "[{\"story\": \"a\", \"n\": 1.}]",
        "[{\"story\": \"a\", \"n\": -}]", "[{\"story\": \"a\", \"n\": tru}]", "[{\"story\": \"a\" \"x\": 1}]", "[{\"story\" \"a\"}]",
        "[{\"story\": \"a\"}] x", "[{\"story\": \"a\", \"n\": [1, 2}]", "[{\"story\": \"a\", 7: 1}]", "[{\"story\": \"a\\u00\"}]",
    };
    int n_bad = (int)(sizeof bad / sizeof bad[0]);
    for (int i = 0; i < n_bad; i++) {
        StoryStats s2 = {0};
        int rr = read_json_stories_mem("bad.json", bad[i], strlen(bad[i]), story_list_add, &sl, &s2);
        check(rr != 0 && strstr(ouro_error, "bad.json: byte "), "malformed JSON %d (%s) accepted or error without position: '%s'",
              i, bad[i], rr ? ouro_error : "");
        story_list_free(&sl);
    }
    // the offset points at the offending byte: the backslash of \x is byte 13
    read_json_stories_mem("bad.json", bad[5], strlen(bad[5]), story_list_add, &sl, &st);
    check(strstr(ouro_error, "byte 13:") != NULL, "bad escape reported as '%s', expected byte 13", ouro_error);
    story_list_free(&sl);
    // nesting deeper than JSON_MAX_DEPTH is an error, not a stack overflow
    StrBuf deep = {0};
    sb_append(&deep, "[{\"x\": ", 7);
    for (int i = 0; i < 100000; i++) sb_push(&deep, '[');
    check(read_json_stories_mem("deep.json", deep.data, deep.len, story_list_add, &sl, &st) != 0 && strstr(ouro_error, "nested"),
          "100000 nested arrays: '%s'", ouro_error);
    story_list_free(&sl);
    free(deep.data);
    // the file reader picks JSON from the .json suffix
    const char *path = "ouro_test_data_records.json";
    data_write_file(path, json, strlen(json));
    st = (StoryStats){0};
    check(read_stories(path, story_list_add, &sl, &st) == 0 && sl.n == 4, "reading %s: %zu stories (expected 4) %s", path, sl.n, ouro_error);
    story_list_free(&sl);
    data_write_file(path, bad[3], strlen(bad[3]));
    check(read_stories(path, story_list_add, &sl, &st) != 0 && strstr(ouro_error, path) && strstr(ouro_error, "end of file"),
          "truncated JSON file: error '%s' does not name the file and the end of file", ouro_error);
    story_list_free(&sl);
    remove(path);
}

// ----------------------------------------------------------------------------
// shards and the split

static void test_shard_round_trip(void) {
    const char *path = "ouro_test_data_shard.bin";
    size_t n = 100000;
    uint16_t *tokens = xmalloc(n * sizeof *tokens), *back = NULL;
    Rng rng;
    rng_seed(&rng, 5);
    for (size_t i = 0; i < n; i++) tokens[i] = (uint16_t)rng_below(&rng, 1000);
    size_t n_back = 0;
    int vocab = 0;
    if (check(shard_write(path, tokens, n, 1000) == 0 && shard_read(path, &back, &n_back, &vocab) == 0, "shard round trip: %s", ouro_error)) {
        check(n_back == n && vocab == 1000 && memcmp(back, tokens, n * sizeof *tokens) == 0,
              "shard read back %zu tokens, vocab %d; expected %zu and 1000, same ids", n_back, vocab, n);
        free(back);
    }
    check(file_size(path) == SHARD_HEADER_BYTES + 2 * (long long)n, "shard size %lld, expected %lld", file_size(path),
          SHARD_HEADER_BYTES + 2 * (long long)n);
    // streaming writer, and an empty shard
    ShardWriter sw;
    check(shard_writer_open(&sw, path, 65536) == 0, "shard_writer_open: %s", ouro_error);
    shard_writer_add(&sw, tokens, 10);
    shard_writer_add(&sw, tokens + 10, 5);
    check(shard_writer_close(&sw) == 0 && shard_read(path, &back, &n_back, &vocab) == 0 && n_back == 15 && vocab == 65536 &&
          memcmp(back, tokens, 15 * sizeof *tokens) == 0, "streamed shard of 15 tokens read back as %zu", n_back);
    free(back);
    back = NULL;
    check(shard_write(path, tokens, 0, 300) == 0 && shard_read(path, &back, &n_back, &vocab) == 0 && n_back == 0,
          "empty shard: %s", ouro_error);
    free(back);
    remove(path);
    free(tokens);
}

// Writes bytes as a shard file and checks that shard_read rejects it, naming the file.
static void expect_shard_rejected(const void *bytes, size_t len, const char *what, const char *needle) {
    const char *path = "ouro_test_data_bad_shard.bin";
    data_write_file(path, bytes, len);
    uint16_t *tokens = NULL;
    size_t n;
    int vocab;
    int r = shard_read(path, &tokens, &n, &vocab);
    check(r != 0 && strstr(ouro_error, path) && strstr(ouro_error, needle), "shard with %s: %s", what,
          r ? ouro_error : "accepted");
    if (r == 0) free(tokens);
    remove(path);
}

static void test_shard_rejects_bad_files(void) {
    unsigned char file[24 + 2 * 8];
    memcpy(file, "OUROSHRD", 8);
    le_put_u32(file + 8, 1);
    le_put_u32(file + 12, 1000);
    le_put_u64(file + 16, 8);
    for (int i = 0; i < 8; i++) le_put_u16(file + 24 + 2 * i, (uint16_t)(100 * i));
    expect_shard_rejected(file, sizeof file - 1, "one byte cut off", "truncated");
    expect_shard_rejected(file, sizeof file - 2, "one token cut off", "truncated");
    expect_shard_rejected(file, 20, "a cut header", "truncated");
    unsigned char padded[sizeof file + 2] = {0};
    memcpy(padded, file, sizeof file);
    expect_shard_rejected(padded, sizeof padded, "two extra bytes", "padded");
    unsigned char bad[sizeof file];
    memcpy(bad, file, sizeof file);
    bad[3] = 'X';
    expect_shard_rejected(bad, sizeof bad, "a bad magic", "magic");
    memcpy(bad, file, sizeof file);
    le_put_u32(bad + 8, 2);
    expect_shard_rejected(bad, sizeof bad, "version 2", "version");
    memcpy(bad, file, sizeof file);
    le_put_u32(bad + 12, 256);
    expect_shard_rejected(bad, sizeof bad, "vocab_size 256", "vocab_size");
    memcpy(bad, file, sizeof file);
    le_put_u64(bad + 16, 1ull << 62);
    expect_shard_rejected(bad, sizeof bad, "n_tokens 2^62 (must fail before allocating)", "tokens");
    memcpy(bad, file, sizeof file);
    le_put_u16(bad + 24 + 2 * 5, 1000);
    expect_shard_rejected(bad, sizeof bad, "token 5 == vocab_size", "token 5 ");
    le_put_u16(bad + 24 + 2 * 5, 65535);
    expect_shard_rejected(bad, sizeof bad, "token 5 == 65535", "not below vocab_size 1000");
    uint16_t *tokens;
    size_t n;
    int vocab;
    check(shard_read("ouro_test_data_missing_shard.bin", &tokens, &n, &vocab) != 0 && strstr(ouro_error, "missing_shard"),
          "missing shard: error '%s' does not name it", ouro_error);
}

static void test_split_rule(void) {
    // fraction rule: deterministic, about the right size, duplicates on one side
    SplitRule a = {.fraction = 0.1}, b = {.fraction = 0.1};
    int n_val = 0, same = 1;
    char story[64];
    for (int i = 0; i < 20000; i++) {
        int len = snprintf(story, sizeof story, "Once upon a time there were %d cats.", i);
        int va = split_is_validation(&a, story, (size_t)len);
        same &= va == split_is_validation(&b, story, (size_t)len) && va == split_is_validation(&a, story, (size_t)len);
        n_val += va;
    }
    check(same, "the fraction split is not deterministic, or a duplicate story changed sides");
    check(n_val > 1700 && n_val < 2300, "fraction 0.1 of 20000 stories: %d validation, expected 1700..2300", n_val);
    // first-N rule: the first 3 distinct stories, and later copies of them
    SplitRule f = {.max_stories = 3};
    const char *seq[] = {"s1", "s2", "s1", "s3", "s4", "s2", "s5", "s3"};
    const int expected[] = {1, 1, 1, 1, 0, 1, 0, 1};
    int ok = 1;
    for (int i = 0; i < 8; i++) ok &= split_is_validation(&f, seq[i], 2) == expected[i];
    check(ok, "first-3 split: wrong sides for the sequence s1 s2 s1 s3 s4 s2 s5 s3");
    split_free(&f);
}

// prepare encode's check that --out-train and --out-val differ: by canonical folder and name,
// not by spelling ("./X" is "X"; a string compare let both writers share one temp file).
static void test_same_output(void) {
    struct { const char *a, *b; int same; } cases[] = {
        {"ouro_x.bin", "./ouro_x.bin", 1}, {"/tmp/ouro_x.bin", "/tmp/../tmp/ouro_x.bin", 1},
        {"/tmp/ouro_x.bin", "/tmp/ouro_y.bin", 0}, {"/tmp/ouro_x.bin", "/ouro_x.bin", 0},
        {"/no/such/dir/x", "/no/such/dir/x", 1}, {"/no/such/dir/x", "/no/such/dir/y", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check(same_output(cases[i].a, cases[i].b) == cases[i].same, "same_output(%s, %s) should be %d",
              cases[i].a, cases[i].b, cases[i].same);
}

static void run_data_tests(void) {
    test_same_output();
    test_tokenizer_chunks();
    test_tokenizer_merge_order();
    test_tokenizer_round_trip_random();
    test_tokenizer_deterministic_save_load();
    test_tokenizer_rejects_corrupt_files();
    test_tokenizer_real_sample();
    test_text_reader();
    test_json_reader();
    test_shard_round_trip();
    test_shard_rejects_bad_files();
    test_split_rule();
}
