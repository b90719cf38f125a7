// tinystories/test_storygen.c: tests for the built-in story generator. test_all.c includes this
// file after its harness (check, skip) and after tinystories/storygen.c.

// The first thing wrong with one story's text, or NULL when it looks right: printable ASCII and
// "\n" only, no template syntax left over, no empty paragraph, quotes balanced in every
// paragraph, a capital letter after every full stop and none after ",\"", "a"/"an" agreeing
// with the next word.
static const char *storygen_problem(const char *s, size_t n) {
    if (n == 0) return "empty story";
    if (strlen(s) != n) return "returned length differs from strlen";
    if (s[0] == ' ' || s[0] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\n') return "leading or trailing space";
    size_t quotes = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c != '\n' && (c < 32 || c > 126)) return "byte outside printable ASCII";
        if (strchr("{}[]<>|", c)) return "template syntax left in the text";
        if (c == '\n' && s[i + 1] == '\n') return "empty paragraph";
        if (c == '"') quotes++;
        if ((c == '\n' || i + 1 == n) && quotes % 2) return "unbalanced quotes in a paragraph";
        if (i >= 2 && s[i - 1] == ' ' && (s[i - 2] == '.' || s[i - 2] == '!' || s[i - 2] == '?')
            && c >= 'a' && c <= 'z') return "sentence starts with a lower-case letter";
        if (i >= 3 && s[i - 3] == ',' && s[i - 2] == '"' && s[i - 1] == ' ' && c >= 'A' && c <= 'Z'
            && (strncmp(s + i, "He ", 3) == 0 || strncmp(s + i, "She ", 4) == 0 || strncmp(s + i, "Said ", 5) == 0
                || strncmp(s + i, "Asked ", 6) == 0))
            return "capital letter after a quotation that ends in a comma";
        int word_start = i == 0 || s[i - 1] == ' ' || s[i - 1] == '\n' || s[i - 1] == '"';
        if (word_start && (c == 'a' || c == 'A') && i + 2 < n) {
            int vowel_next = s[i + 2] != 0 && strchr("aeiouAEIOU", s[i + 2]) != NULL;
            if (s[i + 1] == ' ' && vowel_next) return "\"a\" before a vowel";
            if (s[i + 1] == 'n' && i + 3 < n && s[i + 2] == ' ' && !strchr("aeiouAEIOU", s[i + 3]))
                return "\"an\" before a consonant";
        }
    }
    return NULL;
}

static size_t storygen_words(const char *s) {
    size_t words = 0;
    for (size_t i = 0; s[i]; i++)
        if (s[i] != ' ' && s[i] != '\n' && (i == 0 || s[i - 1] == ' ' || s[i - 1] == '\n')) words++;
    return words;
}

static size_t storygen_paragraphs(const char *s) {
    size_t n = 1;
    for (size_t i = 0; s[i]; i++) n += s[i] == '\n';
    return n;
}

static void test_storygen_determinism(void) {
    static char a[8192], b[8192];

    // Same seed: byte-identical stories, and the two rngs stay in step.
    Rng r1, r2;
    rng_seed(&r1, 42);
    rng_seed(&r2, 42);
    int same = 1;
    for (int i = 0; i < 300 && same; i++) {
        size_t na = story_generate(&r1, a, sizeof a);
        size_t nb = story_generate(&r2, b, sizeof b);
        same = na == nb && memcmp(a, b, na + 1) == 0 && r1.state == r2.state;
        check(same, "storygen: seed 42, story %d differs between two runs", i);
    }

    // Different seeds, different stories; and a stream does not repeat itself.
    rng_seed(&r1, 1);
    rng_seed(&r2, 2);
    story_generate(&r1, a, sizeof a);
    story_generate(&r2, b, sizeof b);
    check(strcmp(a, b) != 0, "storygen: seeds 1 and 2 gave the same first story");
    int repeats = 0;
    for (int i = 0; i < 300; i++) {
        memcpy(b, a, sizeof a);
        story_generate(&r1, a, sizeof a);
        repeats += strcmp(a, b) == 0;
    }
    check(repeats == 0, "storygen: %d of 300 stories repeated the story before", repeats);

    // Every plot, many casts: clean text within the documented bounds.
    size_t min_words = SIZE_MAX, max_words = 0, min_paras = SIZE_MAX, max_paras = 0;
    for (int plot = 0; plot < N_STORY_PLOTS; plot++) {
        Rng r;
        rng_seed(&r, 1000 + (uint64_t)plot);
        for (int i = 0; i < 60; i++) {
            size_t n = story_generate_plot(&r, plot, a, sizeof a);
            const char *problem = storygen_problem(a, n);
            if (!check(problem == NULL, "storygen: plot '%s', story %d: %s:\n%s", STORY_PLOTS[plot].name, i,
                       problem ? problem : "", a)) return;
            size_t words = storygen_words(a), paras = storygen_paragraphs(a);
            if (words < min_words) min_words = words;
            if (words > max_words) max_words = words;
            if (paras < min_paras) min_paras = paras;
            if (paras > max_paras) max_paras = paras;
        }
    }
    check(min_words >= 100 && max_words <= 300, "storygen: story lengths %zu..%zu words, expected within 100..300",
          min_words, max_words);
    check(min_paras >= 3 && max_paras <= 5, "storygen: %zu..%zu paragraphs, expected within 3..5",
          min_paras, max_paras);

    // Small caps: a prefix of the full story cut at a word boundary, always NUL-terminated and
    // shorter than cap; cap 0 writes nothing; the rng advances the same whatever the cap.
    Rng full_rng;
    rng_seed(&full_rng, 7);
    size_t full_len = story_generate(&full_rng, a, sizeof a);
    const size_t caps[] = {0, 1, 2, 5, 16, 64, 100, 333, 1000, full_len, full_len + 1, 8192};
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        size_t cap = caps[k];
        Rng r;
        rng_seed(&r, 7);
        memset(b, 'X', sizeof b);
        size_t n = story_generate(&r, b, cap);
        check(r.state == full_rng.state, "storygen: cap %zu changed how far the rng advanced", cap);
        if (cap == 0) {
            check(n == 0 && b[0] == 'X', "storygen: cap 0 returned %zu or wrote into the buffer", n);
            continue;
        }
        if (!check(n < cap && b[n] == 0 && strlen(b) == n, "storygen: cap %zu gave length %zu, not "
                   "NUL-terminated below cap", cap, n)) continue;
        check(memcmp(a, b, n) == 0, "storygen: cap %zu: text is not a prefix of the full story", cap);
        if (cap > full_len) check(n == full_len, "storygen: cap %zu cut a %zu-byte story to %zu", cap, full_len, n);
        else check(n == 0 || ((a[n] == ' ' || a[n] == '\n') && b[n - 1] != ' ' && b[n - 1] != '\n'),
                   "storygen: cap %zu cut the story in the middle of a word (at %zu)", cap, n);
        if (cap >= 64) check(n > 0, "storygen: cap %zu gave an empty story", cap);
    }
}

static void run_storygen_tests(void) {
    test_storygen_determinism();
}
