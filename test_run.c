// test_run.c: tests of run.c (inference with exits that skip compute). Included by test_all.c
// after its harness (check, skip, shared_data_dir), in the float build only (run.c reads float32
// exports): #ifndef OURO_DOUBLE / #include "test_run.c" / #endif; run_run_tests() runs them all.
// Each test builds a small random model in memory, exports it to ouro_test_run_*.bin (in the
// tests' scratch folder) with ouro_export (its tokenizer trained on a built-in text) and loads it
// with run.c's loader.
//
// Tolerance of the decode-vs-ouro_forward comparisons: run.c computes the same function one token
// at a time (matrix-vector products and a one-query attention with their own summation order,
// instead of ouro.c's blocked matmul over the whole sequence), so float32 results differ by
// rounding, which T*L layers and the norms between them amplify a little. The bound is
// |decode - forward| <= 1e-4 * max(1, max |logit|) per row of logits: ~1000 times float32's
// 1.2e-7, while a wrong cache entry, position or step changes the logits by O(0.1) or more. The
// run prints how close the worst row came.
#define TESTING  // leaves out run.c's main()
#include "run.c"

static const double RUN_TEST_TOL = 1e-4;

static const char run_test_text[] =
    "Once upon a time there was a little girl named Lily. She liked to play in the park with her dog. "
    "One day Lily saw a big red ball in the tree. She wanted the ball, but the tree was too tall. "
    "Her dog barked and jumped, and the ball fell down. Lily was happy. She said thank you to her dog, "
    "and they played with the ball all day. The sun was warm and the sky was blue.";

// Trains a tokenizer on the built-in text and returns its file bytes (free them) and vocab size.
static char *run_test_tokenizer_bytes(size_t *len, int *vocab_size) {
    const char *path = "ouro_test_run_tok.bin";
    Tokenizer tok;
    char *bytes = NULL;
    if (tokenizer_train(&tok, run_test_text, sizeof run_test_text - 1, 300) || tokenizer_save(&tok, path) ||
        read_file(path, 1 << 20, &bytes, len))
        die("test_run: tokenizer fixture: %s", ouro_error);
    *vocab_size = tok.vocab_size;
    tokenizer_free(&tok);
    remove(path);
    return bytes;
}

// A random model (T = 3, L = 2, 24 positions) with the tokenizer's vocabulary (plus extra_vocab),
// exported to path. The Ouro stays in *net for the reference forward passes.
static int run_test_model(Ouro *net, const char *path, int tied, int extra_vocab, uint64_t seed) {
    size_t tok_len = 0;
    int V;
    char *tok = run_test_tokenizer_bytes(&tok_len, &V);
    Config cfg = {.V = V + extra_vocab, .d = 16, .H = 2, .F = 24, .L = 2, .T = 3, .max_seq_len = 24,
                  .tied = tied, .rope_theta = 10000.0f, .norm_eps = 1e-6f};
    int ok = check(ouro_init(net, &cfg, seed) == 0, "test model init: %s", ouro_error);
    if (ok) {
        // every weight away from its initial value (test_all.c's scramble_params_by), somewhat
        // smaller than for the gradient check: gate weights that give varied exits
        scramble_params_by(net, seed + 1, (Scramble){0.3, 0.5, 0.3, 0.2});
        ok = check(ouro_export(net, path, tok, tok_len) == 0, "test model export: %s", ouro_error);
    }
    free(tok);
    return ok;
}

// The test model exported to path and loaded back by run.c: the fixture of most tests below.
// Returns 0 (with a failed check, and nothing left allocated) when either step fails.
static int run_test_open(Ouro *net, Model *m, const char *path, int tied, uint64_t seed) {
    if (!run_test_model(net, path, tied, 0, seed)) return 0;
    if (check(model_load(m, path) == 0, "loading a valid export: %s", ouro_error)) return 1;
    ouro_free(net);
    return 0;
}

// After a test edits net's weights: exports it again (with the fixture's tokenizer) and loads it
// into m. Returns 1, or 0 with a failed check naming `what`.
static int run_test_reexport(Ouro *net, Model *m, const char *path, const char *what) {
    size_t tok_len = 0;
    int tok_V;
    char *tok = run_test_tokenizer_bytes(&tok_len, &tok_V);
    int ok = check(ouro_export(net, path, tok, tok_len) == 0 && model_load(m, path) == 0, "%s: %s", what, ouro_error);
    free(tok);
    return ok;
}

static void run_test_close(Ouro *net, Model *m, const char *path) {
    model_free(m);
    ouro_free(net);
    remove(path);
}

static void run_test_tokens(int *x, int n, int V, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    random_tokens(x, (size_t)n, V, &rng);  // test_all.c's
}

// logits (n_steps, S, V) of ouro.c's full-sequence forward: h_t @ head^T after every step.
static float *run_test_reference_logits(Ouro *net, const int *x, int S, int n_steps) {
    const Config *c = &net->cfg;
    float *ref = xmalloc((size_t)n_steps * S * c->V * sizeof(float));
    if (ouro_forward(net, x, NULL, 1, S, n_steps, OURO_EVAL)) die("test_run: forward: %s", ouro_error);
    for (int t = 0; t < n_steps; t++)
        linear_forward(ref + (size_t)t * S * c->V, step_h(net, t), net->params.head, S, c->d, c->V);
    return ref;
}

// max |a - b| / max(1, max |b|) over one row of V logits.
static double run_test_row_error(const float *a, const float *b, int V) {
    double err = 0, scale = 1;
    for (int i = 0; i < V; i++) {
        err = worst_of(err, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return err / scale;
}

// (a) incremental decoding with full KV caches, from position 0 and after a batched prefill,
// reproduces ouro_forward's logits after EVERY step t = 1..T at every position.
static void test_run_decode_matches_forward(void) {
    const char *path = "ouro_test_run_model.bin";
    Ouro net;
    Model m;
    if (!run_test_open(&net, &m, path, 0, 11)) return;
    const Config *c = &m.cfg;
    int S = c->max_seq_len, T = c->T, V = c->V, x[64];
    run_test_tokens(x, S, V, 5);
    float *ref = run_test_reference_logits(&net, x, S, T);
    ExitPolicy full_depth = {.kind = EXIT_STATIC, .n = T};
    TokenTrace tr;
    for (int n_prefill = 0; n_prefill <= S / 2; n_prefill += S / 2) {  // from position 0; after a prefill
        RunState s;
        runstate_init(&s, &m, KV_FULL, T, n_prefill, m.cfg.max_seq_len, 1);
        double worst = 0;
        int first = 0;
        if (n_prefill) {
            prefill(&m, &s, &full_depth, x, n_prefill, &tr);
            first = n_prefill - 1;  // the prefill's step logits are those of its last position
            for (int t = 0; t < T; t++)
                worst = worst_of(worst, run_test_row_error(s.step_logits + (size_t)t * V, ref + ((size_t)t * S + first) * V, V));
            first++;
        }
        for (int pos = first; pos < S; pos++) {
            decode_token(&m, &s, &full_depth, x[pos], pos, &tr);
            for (int t = 0; t < T; t++)
                worst = worst_of(worst, run_test_row_error(s.step_logits + (size_t)t * V, ref + ((size_t)t * S + pos) * V, V));
        }
        check(worst <= RUN_TEST_TOL, "decode (prefill %d) vs ouro_forward, every step and position: relative error %.3g > %g",
              n_prefill, worst, RUN_TEST_TOL);
        printf("run: decode vs ouro_forward (prefill %2d, T=%d steps x %d positions): worst error %.2g of the tolerance\n",
               n_prefill, T, S, worst / RUN_TEST_TOL);
        runstate_free(&s);
    }
    free(ref);
    run_test_close(&net, &m, path);
}

// Decodes x[0..S) with the policy and strategy from position 0; copies every position's exit-step
// logits into logits (S, V) and exit steps into exits (S). Returns the layer-steps computed.
static long long run_test_decode_all(Model *m, const ExitPolicy *pol, KvStrategy kv, const int *x, int S,
                                     float *logits, int *exits, RunState *keep) {
    RunState s;
    runstate_init(&s, m, kv, policy_max_steps(pol, m->cfg.T), 0, m->cfg.max_seq_len, 0);
    TokenTrace tr;
    for (int pos = 0; pos < S; pos++) {
        exits[pos] = decode_token(m, &s, pol, x[pos], pos, &tr);
        memcpy(logits + (size_t)pos * m->cfg.V, s.logits, m->cfg.V * sizeof(float));
    }
    long long steps = s.layer_steps;
    if (keep) *keep = s;
    else runstate_free(&s);
    return steps;
}

// (b) Q-exit with q = 1 equals static T exactly; (c) static n reads the step-n head, also beyond
// T; (d) Q-exit with a small q computes fewer layer-steps, and exactly the ones it reports;
// the full strategy fills an early-exited position's missing steps with its exit step's K/V.
static void test_run_exit_policies(void) {
    const char *path = "ouro_test_run_model.bin";
    Ouro net;
    Model m;
    if (!run_test_open(&net, &m, path, 1, 21)) return;  // tied head this time
    const Config *c = &m.cfg;
    int S = c->max_seq_len, T = c->T, V = c->V, L = c->L, x[64], exits[64], exits2[64];
    run_test_tokens(x, S, V, 9);
    float *ref = run_test_reference_logits(&net, x, S, 2 * T);
    float *a = xmalloc((size_t)S * V * sizeof(float)), *b = xmalloc((size_t)S * V * sizeof(float));

    ExitPolicy static_T = {.kind = EXIT_STATIC, .n = T}, q1 = {.kind = EXIT_Q, .q = 1.0};
    run_test_decode_all(&m, &static_T, KV_FULL, x, S, a, exits, NULL);
    long long steps_q1 = run_test_decode_all(&m, &q1, KV_FULL, x, S, b, exits2, NULL);
    int all_T = 1;
    for (int i = 0; i < S; i++) all_T &= exits2[i] == T;
    check(memcmp(a, b, (size_t)S * V * sizeof(float)) == 0 && all_T && steps_q1 == (long long)S * T * L,
          "Q-exit q=1 differs from static T (exits all T: %d, layer-steps %lld, expected %d)", all_T, steps_q1, S * T * L);

    for (int n = 1; n <= 2 * T; n++) {
        ExitPolicy static_n = {.kind = EXIT_STATIC, .n = n};
        long long steps = run_test_decode_all(&m, &static_n, KV_FULL, x, S, a, exits, NULL);
        double worst = 0;
        for (int pos = 0; pos < S; pos++)
            worst = worst_of(worst, run_test_row_error(a + (size_t)pos * V, ref + ((size_t)(n - 1) * S + pos) * V, V));
        check(worst <= RUN_TEST_TOL && steps == (long long)S * n * L,
              "static %d: error vs ouro_forward's step-%d logits %.3g > %g, or layer-steps %lld != %d", n, n, worst,
              RUN_TEST_TOL, steps, S * n * L);
    }

    // q = 0 leaves every token after step 1; a small q leaves some early, never after T.
    ExitPolicy q0 = {.kind = EXIT_Q, .q = 0.0}, q_small = {.kind = EXIT_Q, .q = 0.3};
    long long steps_q0 = run_test_decode_all(&m, &q0, KV_FULL, x, S, a, exits, NULL);
    check(steps_q0 == (long long)S * L, "Q-exit q=0: %lld layer-steps, expected %d (one step per token)", steps_q0, S * L);
    RunState s;
    long long steps_small = run_test_decode_all(&m, &q_small, KV_FULL, x, S, a, exits, &s);
    long long counted = 0;
    int early = 0, in_range = 1;
    for (int i = 0; i < S; i++) {
        counted += (long long)exits[i] * L;
        early += exits[i] < T;
        in_range &= exits[i] >= 1 && exits[i] <= T;
    }
    check(steps_small < (long long)S * T * L && early > 0 && in_range && steps_small == counted,
          "Q-exit q=0.3: %lld layer-steps (full depth %d), %d early exits, counted %lld", steps_small, S * T * L, early, counted);
    printf("run: Q-exit q=0.3 on the random model: %.2f steps per token of T=%d\n", (double)steps_small / L / S, T);
    // the default fill: steps after the exit hold the exit step's K/V
    int filled = 1, d = c->d;
    for (int pos = 0; pos < S; pos++)
        for (int l = 0; l < L; l++)
            for (int t = exits[pos]; t < T; t++) {
                size_t at = step_region(&s, t, l), exit = step_region(&s, exits[pos] - 1, l);
                for (int i = 0; i < d; i++)
                    filled &= s.key_cache[at + key_index(pos, i, d)] == s.key_cache[exit + key_index(pos, i, d)] &&
                              s.value_cache[at + (size_t)pos * d + i] == s.value_cache[exit + (size_t)pos * d + i];
            }
    check(filled, "KV full: an early-exited position's later steps do not hold its exit step's K/V");
    runstate_free(&s);

    // hidden-state difference: eps = 0 never stops early (runs T); a huge eps stops at step 2.
    ExitPolicy never = {.kind = EXIT_HDIFF, .eps = 0}, always = {.kind = EXIT_HDIFF, .eps = 1e30};
    long long steps_never = run_test_decode_all(&m, &never, KV_FULL, x, S, a, exits, NULL);
    long long steps_always = run_test_decode_all(&m, &always, KV_FULL, x, S, b, exits, NULL);
    check(steps_never == (long long)S * T * L && steps_always == (long long)S * (T < 2 ? T : 2) * L,
          "hdiff: eps=0 ran %lld layer-steps (expected %d), eps=1e30 ran %lld (expected %d)", steps_never, S * T * L,
          steps_always, S * (T < 2 ? T : 2) * L);
    // eps = 1e-3 is far below the real distances between steps (O(1): h is normed), so it never
    // stops early either; a distance that is always 0 (h compared with itself) would stop at step 2
    ExitPolicy tiny = {.kind = EXIT_HDIFF, .eps = 1e-3};
    long long steps_tiny = run_test_decode_all(&m, &tiny, KV_FULL, x, S, a, exits, NULL);
    check(steps_tiny == (long long)S * T * L, "hdiff: eps=1e-3 ran %lld layer-steps, expected %d", steps_tiny, S * T * L);
    free(a);
    free(b);
    free(ref);
    run_test_close(&net, &m, path);
}

// Q-exit's rule on gate logits chosen so that p = (0.2, 0.2, 0.3, 0.3) and the CDF is 0.2, 0.4,
// 0.7, 1: a token leaves at the first step whose CDF reaches q (q = 0.3 at step 2, 0.5 at 3),
// not a step later (the CDF read before adding p(t)) nor earlier.
static void test_run_qexit_rule(void) {
    int T = 4;
    float z[4] = {logf(0.2f / 0.8f), logf(0.25f / 0.75f), 0.0f, 0.0f};   // lambda = 0.2, 0.25, 0.5
    double qs[4] = {0.1, 0.3, 0.5, 0.9};
    int want[4] = {1, 2, 3, 4};
    for (int i = 0; i < 4; i++) {
        ExitPolicy pol = {.kind = EXIT_Q, .q = qs[i]};
        ExitState es = {0, 0};
        TokenTrace tr = {0};
        int t = 1;
        while (!exit_after_step(&pol, T, t, z[t - 1], INFINITY, &es, &tr)) t++;
        check(t == want[i] && fabsf(tr.p[0] - 0.2f) < 1e-6f && (t < 2 || fabsf(tr.p[1] - 0.2f) < 1e-6f),
              "Q-exit q=%g with CDF 0.2, 0.4, 0.7, 1: left at step %d (want %d); p(1) %g, p(2) %g (want 0.2)",
              qs[i], t, want[i], tr.p[0], tr.p[1]);
    }
}

// The prefill's exit step is the FIRST step at which the policy stops the last prompt position
// (all steps still run for the caches): Q-exit q = 0 gives step 1, with ouro_forward's step-1
// logits at that position; hdiff with a huge eps gives step 2 (its first chance). Taking the
// last stopping step instead would give T both times.
static void test_run_prefill_exit(void) {
    const char *path = "ouro_test_run_model.bin";
    Ouro net;
    Model m;
    if (!run_test_open(&net, &m, path, 0, 91)) return;
    int n = 12, T = m.cfg.T, V = m.cfg.V, x[12];
    run_test_tokens(x, n, V, 17);
    float *ref = run_test_reference_logits(&net, x, n, T);
    // hdiff with eps = 1e-3, far below the real distances between steps, runs to T: a distance
    // that were always 0 would stop at step 2
    ExitPolicy pols[3] = {{.kind = EXIT_Q, .q = 0.0}, {.kind = EXIT_HDIFF, .eps = 1e30}, {.kind = EXIT_HDIFF, .eps = 1e-3}};
    const char *names[3] = {"Q-exit q=0", "hdiff 1e30", "hdiff 1e-3"};
    int wants[3] = {1, 2, T};
    for (int i = 0; i < 3; i++) {
        RunState s;
        TokenTrace tr;
        if (!check(runstate_init(&s, &m, KV_FULL, T, n, m.cfg.max_seq_len, 0) == 0, "runstate_init: %s", ouro_error)) break;
        int want = wants[i], got = prefill(&m, &s, &pols[i], x, n, &tr);
        double err = got >= 1 && got <= T ? run_test_row_error(s.logits, ref + ((size_t)(got - 1) * n + n - 1) * V, V) : INFINITY;
        check(got == want && tr.exit_step == want && err <= RUN_TEST_TOL,
              "prefill under %s: exit step %d (want %d), logits vs ouro_forward's step %d: error %.3g", names[i],
              got, want, got, err);
        runstate_free(&s);
    }
    free(ref);
    run_test_close(&net, &m, path);
}

// A gate so sure (bias +30, no weights: lambda_1 = 1 - 1e-13, p(1) rounds to exactly 1) that the
// CDF reaches 1 after step 1: Q-exit q = 1 must still run all T steps, as static T does.
static void test_run_q1_with_a_certain_gate(void) {
    const char *path = "ouro_test_run_model.bin";
    Ouro net;
    Model m;
    if (!run_test_open(&net, &m, path, 0, 101)) return;
    model_free(&m);
    const Config *c = &net.cfg;
    int S = c->max_seq_len, T = c->T, L = c->L, x[64], exits[64];
    for (int i = 0; i < c->d; i++) net.params.exit_w[i] = 0;
    net.params.exit_b[0] = 30;
    if (!run_test_reexport(&net, &m, path, "certain-gate model")) { ouro_free(&net); remove(path); return; }
    run_test_tokens(x, S, c->V, 23);
    float *logits = xmalloc((size_t)S * c->V * sizeof(float));
    ExitPolicy q1 = {.kind = EXIT_Q, .q = 1.0};
    long long steps = run_test_decode_all(&m, &q1, KV_FULL, x, S, logits, exits, NULL);
    check(steps == (long long)S * T * L, "Q-exit q=1 with p(1) = 1: %lld layer-steps, expected %d", steps, S * T * L);
    free(logits);
    run_test_close(&net, &m, path);
}

// The KV strategies: identical at static depth 1 (only step 1 exists), different at depth T, and
// each stores what run.c documents, checked at position 0 (whose K/V do not depend on the strategy).
static void test_run_kv_strategies(void) {
    const char *path = "ouro_test_run_model.bin";
    Ouro net;
    Model m;
    if (!run_test_open(&net, &m, path, 0, 31)) return;
    const Config *c = &m.cfg;
    int S = c->max_seq_len, T = c->T, V = c->V, L = c->L, d = c->d, x[64], exits[64];
    run_test_tokens(x, S, V, 13);
    size_t row_bytes = (size_t)S * V * sizeof(float);
    float *base = xmalloc(row_bytes), *other = xmalloc(row_bytes);
    ExitPolicy one = {.kind = EXIT_STATIC, .n = 1}, full_depth = {.kind = EXIT_STATIC, .n = T};
    run_test_decode_all(&m, &one, KV_FULL, x, S, base, exits, NULL);
    for (int k = 1; k < N_KV_STRATEGIES; k++) {
        run_test_decode_all(&m, &one, (KvStrategy)k, x, S, other, exits, NULL);
        check(memcmp(base, other, row_bytes) == 0, "static depth 1: KV %s differs from full", kv_names[k]);
    }
    // Q-exit q = 0: every token leaves after step 1, so every strategy keeps step 1's K/V and all
    // agree bitwise (avg is a mean over the steps a token ran: one here, not T)
    ExitPolicy q0 = {.kind = EXIT_Q, .q = 0.0};
    run_test_decode_all(&m, &q0, KV_FULL, x, S, base, exits, NULL);
    for (int k = 1; k < N_KV_STRATEGIES; k++) {
        run_test_decode_all(&m, &q0, (KvStrategy)k, x, S, other, exits, NULL);
        check(memcmp(base, other, row_bytes) == 0, "Q-exit q=0 (one step per token): KV %s differs from full", kv_names[k]);
    }
    RunState full;
    run_test_decode_all(&m, &full_depth, KV_FULL, x, S, base, exits, &full);
    for (int k = 1; k < N_KV_STRATEGIES; k++) {
        RunState s;
        run_test_decode_all(&m, &full_depth, (KvStrategy)k, x, S, other, exits, &s);
        check(memcmp(base, other, (size_t)V * sizeof(float)) == 0, "KV %s: position 0 differs from full", kv_names[k]);
        check(run_test_row_error(base + (size_t)(S - 1) * V, other + (size_t)(S - 1) * V, V) > 1e-3,
              "KV %s at depth T gives the same last-position logits as full: the strategy has no effect", kv_names[k]);
        for (int values = 0; values < 2; values++) {   // keys (blocked layout), then values (rows)
            const float *cache = values ? full.value_cache : full.key_cache, *shared = values ? s.value_shared : s.key_shared;
            double worst = 0;
            for (int l = 0; l < L; l++)
                for (int i = 0; i < d; i++) {
                    size_t at = values ? (size_t)i : key_index(0, i, d);   // element i of position 0
                    double expect = 0;
                    if (k == KV_FIRST) expect = cache[step_region(&full, 0, l) + at];
                    else if (k == KV_LAST) expect = cache[step_region(&full, T - 1, l) + at];
                    else {
                        float sum = 0;
                        for (int t = 0; t < T; t++) sum += cache[step_region(&full, t, l) + at];
                        expect = sum / T;
                    }
                    worst = worst_of(worst, fabs(shared[shared_region(&s, l) + at] - expect));
                }
            check(worst < 1e-6, "KV %s: stored %s of position 0 is off by %.3g from the documented one", kv_names[k],
                  values ? "value" : "key", worst);
        }
        check(s.cache_bytes * T == full.cache_bytes, "KV %s: %zu cache bytes, expected full's %zu / T", kv_names[k],
              s.cache_bytes, full.cache_bytes);
        runstate_free(&s);
    }
    runstate_free(&full);
    free(base);
    free(other);
    run_test_close(&net, &m, path);
}

// Evaluation: the static-depth CE of eval_pass (token by token, head read after every step) equals
// ouro_forward's mean CE_t for t = 1..2T on the same window, and windows do not leak into each other.
static void test_run_eval(void) {
    const char *path = "ouro_test_run_model.bin";
    Ouro net;
    Model m;
    if (!run_test_open(&net, &m, path, 0, 41)) return;
    const Config *c = &m.cfg;
    int S = c->max_seq_len, T = c->T, x[2 * 24 + 1];
    run_test_tokens(x, 2 * S + 1, c->V, 17);
    uint16_t tokens[2 * 24 + 1] = {0};
    for (int i = 0; i < 2 * S + 1; i++) tokens[i] = (uint16_t)x[i];
    EvalPass ep = {.pol = {.kind = EXIT_STATIC, .n = 2 * T}, .kv = KV_FULL, .every_step = 1};
    EvalScores r;
    check(eval_pass(&m, tokens, (size_t)2 * S + 1, &ep, &r) == 0, "eval_pass: %s", ouro_error);
    // reference: both windows as a batch of 2 sequences
    int inputs[2 * 24], targets[2 * 24];
    for (int i = 0; i < 2 * S; i++) { inputs[i] = x[i]; targets[i] = x[i + 1]; }
    ouro_forward(&net, inputs, targets, 2, S, 2 * T, OURO_EVAL);
    double worst = 0;
    for (int t = 0; t < 2 * T; t++) worst = worst_of(worst, fabs(r.ce_step[t] - net.metrics.ce[t]));
    check(worst < 1e-4 && r.tokens == 2 * S, "eval static depths vs ouro_forward's CE_t: worst |difference| %.3g > 1e-4 (%lld tokens)",
          worst, r.tokens);
    EvalScores q1;
    ep = (EvalPass){.pol = {.kind = EXIT_Q, .q = 1.0}, .kv = KV_FULL};
    eval_pass(&m, tokens, (size_t)2 * S + 1, &ep, &q1);
    check(fabs(q1.ce - r.ce_step[T - 1]) < 1e-12 && q1.depth == T, "eval Q-exit q=1: CE %.9g depth %g, static T: CE %.9g",
          q1.ce, q1.depth, r.ce_step[T - 1]);
    run_test_close(&net, &m, path);
}

// A RunState holds the run's own context (prompt + new tokens), not all of max_seq_len: its caches
// are sized for it, decoding past it fails, and generation stops at its end.
static void test_run_context(void) {
    const char *path = "ouro_test_run_model.bin";
    Ouro net;
    Model m;
    if (!run_test_open(&net, &m, path, 0, 61)) return;
    const Config *c = &net.cfg;   // max_seq_len 24
    RunState s;
    check(runstate_init(&s, &m, KV_FULL, c->T, 3, c->max_seq_len + 1, 0) != 0 && strstr(ouro_error, "max_seq_len"),
          "a context beyond max_seq_len was accepted");
    check(runstate_init(&s, &m, KV_FULL, c->T, 3, 2, 0) != 0 && strstr(ouro_error, "prompt of 3"),
          "a prompt longer than the context was accepted");
    if (check(runstate_init(&s, &m, KV_FULL, c->T, 3, 10, 0) == 0, "runstate_init, context 10: %s", ouro_error)) {
        check(s.cache_bytes == kv_cache_bytes(c, KV_FULL, c->T, 3, 10) &&
              s.cache_bytes * c->max_seq_len == kv_cache_bytes(c, KV_FULL, c->T, 3, c->max_seq_len) * 10,
              "context 10: %zu cache bytes, not 10/24 of max_seq_len's", s.cache_bytes);
        int prompt[3] = {TOKEN_EOT, 'O', 'n'}, out[100];
        Sampler sp;
        GenStats st;
        ExitPolicy pol = {.kind = EXIT_STATIC, .n = c->T};
        sampler_init(&sp, c->V, 1.0f, 1.0f, 5);
        int ok = generate_text(&m, &s, &sp, &pol, prompt, 3, 100, out, NULL, NULL, NULL, &st) == 0;
        check(ok && st.n_generated >= 1 && st.n_generated <= 8, "generation in a context of 10 after a prompt of 3: "
              "%d tokens (at most 8: positions 3..9 and the last sample), %s", st.n_generated, ok ? "ok" : ouro_error);
        TokenTrace tr;
        check(decode_token(&m, &s, &pol, 'x', 10, &tr) < 0 && strstr(ouro_error, "outside the context"),
              "decoding position 10 in a context of 10 did not fail");
        sampler_free(&sp);
        runstate_free(&s);
    }
    run_test_close(&net, &m, path);
}

// Sampling: the same seed gives the same text; temperature 0 is greedy; top-p keeps the nucleus.
static void test_run_sampling(void) {
    const char *path = "ouro_test_run_model.bin";
    Ouro net;
    Model m;
    if (!run_test_open(&net, &m, path, 0, 51)) return;
    const Config *c = &net.cfg;  // the same as m.cfg, and it outlives m
    int prompt[3] = {TOKEN_EOT, 'O', 'n'}, out[3][20];
    ExitPolicy pol = {.kind = EXIT_Q, .q = 0.5};
    uint64_t seeds[3] = {7, 7, 8};
    GenStats st[3];
    for (int run = 0; run < 3; run++) {
        RunState s;
        Sampler sp;
        runstate_init(&s, &m, KV_LAST, c->T, 3, c->max_seq_len, 0);
        sampler_init(&sp, c->V, 1.0f, 0.9f, seeds[run]);
        memset(out[run], 0, sizeof out[run]);
        generate_text(&m, &s, &sp, &pol, prompt, 3, 20, out[run], NULL, NULL, NULL, &st[run]);
        sampler_free(&sp);
        runstate_free(&s);
    }
    check(st[0].n_generated == st[1].n_generated && memcmp(out[0], out[1], sizeof out[0]) == 0,
          "generation with the same seed differs between two runs");
    check(memcmp(out[0], out[2], sizeof out[0]) != 0, "seeds 7 and 8 generate the same 20 tokens");

    // temperature 0: the argmax every time, even when the logits are nearly flat (a sampler that
    // drew at temperature 1 would pick token 1 about a quarter of the time here)
    Sampler sp;
    sampler_init(&sp, 4, 0.0f, 0.9f, 1);
    int argmax_every_time = 1;
    for (int draw = 0; draw < 200; draw++) {
        float logits[4] = {1.0f, 1.01f, 1.0f, 0.99f};
        argmax_every_time &= sampler_sample(&sp, logits) == 1;
    }
    check(argmax_every_time, "temperature 0 does not pick the argmax in every one of 200 draws");
    sampler_free(&sp);
    // a temperature so small that logits / temperature overflow: still the argmax, no NaN
    float logits2[4] = {1.0f, 3.0f, 2.0f, 0.5f};
    sampler_init(&sp, 4, 1e-45f, 1.0f, 1);
    int picked = sampler_sample(&sp, logits2);
    check(picked == 1 && logits2[1] == 1.0f, "temperature 1e-45 picked %d with probability %g (want 1, 1)", picked, logits2[1]);
    sampler_free(&sp);
    // p = (0.6, 0.3, 0.1): top-p 0.5 keeps token 0 only; the full distribution is sampled at its rates
    float probs[3] = {0.6f, 0.3f, 0.1f};
    ProbIndex cand[3];
    Rng rng;
    rng_seed(&rng, 3);
    int counts[3] = {0, 0, 0}, nucleus_ok = 1;
    for (int i = 0; i < 20000; i++) {
        nucleus_ok &= sample_top_p(probs, 3, 0.5f, cand, rng_uniform(&rng)) == 0;
        counts[sample_multinomial(probs, 3, rng_uniform(&rng))]++;
    }
    check(nucleus_ok, "top-p 0.5 of (0.6, 0.3, 0.1) sampled outside the nucleus {0}");
    // top-p 0.7 of (0.5, 0.3, 0.2): the nucleus is {0, 1}, mass 0.8, renormalised to (0.625, 0.375).
    // Coins swept evenly over [0, 1) give those rates exactly, and never token 2.
    float probs2[3] = {0.5f, 0.3f, 0.2f};
    int nucleus_counts[3] = {0, 0, 0};
    for (int i = 0; i < 10000; i++) nucleus_counts[sample_top_p(probs2, 3, 0.7f, cand, (i + 0.5f) / 10000)]++;
    check(abs(nucleus_counts[0] - 6250) <= 2 && nucleus_counts[2] == 0,
          "top-p 0.7 of (0.5, 0.3, 0.2): rates %.4f, %.4f, %.4f (want 0.625, 0.375, 0)", nucleus_counts[0] / 1e4,
          nucleus_counts[1] / 1e4, nucleus_counts[2] / 1e4);
    check(fabs(counts[0] / 20000.0 - 0.6) < 0.02 && fabs(counts[2] / 20000.0 - 0.1) < 0.01,
          "multinomial sampling rates %.3f, %.3f, %.3f for (0.6, 0.3, 0.1)", counts[0] / 20000.0, counts[1] / 20000.0,
          counts[2] / 20000.0);
    model_free(&m);

    // Stopping at <|endoftext|>: make h's component 0 a positive constant and give <|endoftext|>
    // the only head weight on it (+10: greedy picks it at once; -10: never).
    Params *p = &net.params;
    int d = c->d, L = c->L;
    for (int v = 0; v < c->V; v++) p->embed[(size_t)v * d] = 1;            // x_0 = 1 at step 1
    for (int l = 0; l < L; l++) p->norm_attn_post[l * d] = p->norm_mlp_post[l * d] = 0;  // sub-blocks leave x_0 alone
    for (int j = 0; j < d; j++) p->norm_final[j] = j == 0;                  // h = (x_0 / rms(x), 0, ...)
    for (int v = 0; v < c->V; v++) p->head[(size_t)v * d] = 0;
    for (int sign = 1; sign >= -1; sign -= 2) {
        p->head[(size_t)TOKEN_EOT * d] = (real)(10 * sign);
        GenStats gs;
        if (!run_test_reexport(&net, &m, path, "EOT model")) break;
        RunState s;
        Sampler sp;
        runstate_init(&s, &m, KV_FULL, c->T, 3, c->max_seq_len, 0);
        sampler_init(&sp, c->V, 0.0f, 0.9f, 1);
        generate_text(&m, &s, &sp, &pol, prompt, 3, 10, out[0], NULL, NULL, NULL, &gs);
        if (sign > 0)
            check(gs.n_generated == 1 && out[0][0] == TOKEN_EOT, "generation did not stop at <|endoftext|>: %d tokens, first %d",
                  gs.n_generated, out[0][0]);
        else
            check(gs.n_generated == 10, "generation stopped after %d of 10 tokens without <|endoftext|>", gs.n_generated);
        sampler_free(&sp);
        runstate_free(&s);
        model_free(&m);
    }
    ouro_free(&net);
    remove(path);
}

static void run_test_write(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (f) { fwrite(data, 1, n, f); fclose(f); }
}

// Writes bytes to bad_path and checks that model_load rejects them with a message containing want.
static void run_test_expect_rejected(const char *bad_path, const void *bytes, size_t n, const char *want, const char *what) {
    Model m;
    run_test_write(bad_path, bytes, n);
    int rejected = model_load(&m, bad_path) != 0;
    if (!rejected) model_free(&m);
    check(rejected && strstr(ouro_error, want) && strstr(ouro_error, bad_path),
          "%s: %s (error: \"%s\", expected it to mention \"%s\" and the file)", what, rejected ? "wrong message" : "accepted",
          rejected ? ouro_error : "", want);
}

// (e) the loader rejects broken files with a message that names the file and the problem.
static void test_run_loader_rejects(void) {
    const char *path = "ouro_test_run_model.bin", *bad = "ouro_test_run_bad.bin";
    Ouro net;
    if (!run_test_model(&net, path, 0, 0, 61)) return;
    char *buf = NULL;
    size_t len = 0;
    if (!check(read_file(path, 1 << 30, &buf, &len) == 0, "re-reading the export: %s", ouro_error)) { ouro_free(&net); return; }
    ExportHeader *hdr = (ExportHeader *)buf;
    size_t tok_at = sizeof(ExportHeader) + hdr->n_weights * sizeof(float);

    run_test_expect_rejected(bad, buf, len - 5, "bytes", "truncated export");
    run_test_expect_rejected(bad, buf, 100, "truncated", "export shorter than its header");
    buf[0] = 'X';
    run_test_expect_rejected(bad, buf, len, "magic", "wrong magic");
    buf[0] = 'O';
    hdr->version = 99;
    run_test_expect_rejected(bad, buf, len, "version", "wrong version");
    hdr->version = EXPORT_VERSION;
    hdr->config.F += 2;  // a valid config, but not the one the weights were written for
    run_test_expect_rejected(bad, buf, len, "weights", "config that does not match n_weights");
    hdr->config.F -= 2;
    hdr->config.H = 3;
    run_test_expect_rejected(bad, buf, len, "divisible", "invalid config");
    hdr->config.H = net.cfg.H;
    buf[tok_at + 1] ^= 0x20;  // the embedded tokenizer's magic
    run_test_expect_rejected(bad, buf, len, "tokenizer", "corrupted embedded tokenizer (magic)");
    buf[tok_at + 1] ^= 0x20;
    if (len > tok_at + 28) {
        buf[tok_at + 24] = (char)0xFF;  // merge 0 joins ids that do not exist yet
        buf[tok_at + 25] = (char)0x7F;
        run_test_expect_rejected(bad, buf, len, "tokenizer", "corrupted embedded tokenizer (merge)");
    }
    Model m;
    check(model_load(&m, "/tmp/ouro_no_such_model.bin") != 0 && strstr(ouro_error, "ouro_no_such_model"),
          "a missing model file was accepted (error: %s)", ouro_error);
    free(buf);
    ouro_free(&net);

    // a model whose vocabulary is not its tokenizer's
    if (run_test_model(&net, bad, 0, 3, 71)) {
        int rejected = model_load(&m, bad) != 0;
        if (!rejected) model_free(&m);
        check(rejected && strstr(ouro_error, "vocabulary"), "tokenizer/model vocabulary mismatch accepted (error: %s)",
              rejected ? ouro_error : "");
        ouro_free(&net);
    }
    remove(path);
    remove(bad);
}

// Threads change nothing: an evaluation pass (windows in parallel) and a matrix-vector product
// split over threads give bit-identical results with 1 and 2 threads.
static void test_run_threads(void) {
    const char *path = "ouro_test_run_model.bin";
    Ouro net;
    Model m;
    if (!run_test_open(&net, &m, path, 0, 81)) return;
    int S = m.cfg.max_seq_len, n = 3 * S + 1, x[3 * 24 + 1];
    uint16_t tokens[3 * 24 + 1] = {0};
    run_test_tokens(x, n, m.cfg.V, 19);
    for (int i = 0; i < n; i++) tokens[i] = (uint16_t)x[i];
    EvalPass ep = {.pol = {.kind = EXIT_Q, .q = 0.5}, .kv = KV_AVG};
    EvalScores r1, r2;
    int saved = set_thread_count(1);
    eval_pass(&m, tokens, (size_t)n, &ep, &r1);
    set_thread_count(2);
    eval_pass(&m, tokens, (size_t)n, &ep, &r2);
    check(r1.ce == r2.ce && r1.layer_steps == r2.layer_steps, "eval with 1 vs 2 threads: CE %.17g vs %.17g, layer-steps %lld vs %lld",
          r1.ce, r2.ce, r1.layer_steps, r2.layer_steps);
    int rows = 1100, cols = 1000;  // above parallel_min() with either wait policy: 2 threads split the rows
    float *w = xmalloc((size_t)rows * cols * sizeof(float)), *v = xmalloc(cols * sizeof(float));
    float *packed = xmalloc(repacked_size(rows, cols) * sizeof(float));
    float *o1 = xmalloc(rows * sizeof(float)), *o2 = xmalloc(rows * sizeof(float));
    Rng rng;
    rng_seed(&rng, 23);
    for (int i = 0; i < rows * cols; i++) w[i] = (float)rng_normal(&rng);
    for (int i = 0; i < cols; i++) v[i] = (float)rng_normal(&rng);
    repack_rows(packed, w, rows, cols);
    matvec_packed(o1, packed, v, rows, cols, 1);
    matvec_packed(o2, packed, v, rows, cols, 2);
    check(memcmp(o1, o2, rows * sizeof(float)) == 0, "matvec_packed split over 2 threads differs from 1 thread");
    // the three products against a double-precision loop: a whole block of 16 rows and partial
    // ones, columns that are and are not a multiple of 4 and 8 (45 = 32 + 8 + 5: each of
    // weighted_rows' widths), a row stride wider than the rows
    for (int shape = 0; shape < 4; shape++) {
        int n_rows = (int[]){19, 8, 1, 13}[shape], n_cols = (int[]){45, 32, 5, 2}[shape], ld = n_cols + 3;
        for (int kind = 0; kind < 2; kind++) {
            int c0 = kind == 0 ? 3 : 0;  // the first column used (a head's offset for the keys)
            if (kind == 0) {  // rows of w as keys of width ld; scores over columns 3..ld-1
                float *keys = xcalloc(repacked_size(n_rows, ld), sizeof(float));
                for (int r = 0; r < n_rows; r++) key_write(keys, r, w + (size_t)r * ld, ld);
                key_scores(o1, keys, c0, v, n_rows, n_cols, ld);
                free(keys);
            } else {  // a packed matrix of n_cols columns: repack exactly those
                float *sub = xmalloc((size_t)n_rows * n_cols * sizeof(float));
                for (int r = 0; r < n_rows; r++) memcpy(sub + (size_t)r * n_cols, w + (size_t)r * ld, n_cols * sizeof(float));
                repack_rows(packed, sub, n_rows, n_cols);
                matvec_packed(o1, packed, v, n_rows, n_cols, 1);
                free(sub);
            }
            double worst = 0;
            for (int r = 0; r < n_rows; r++) {
                double ref = 0, mag = 0;
                for (int c = 0; c < n_cols; c++) {
                    double wx = (double)w[r * ld + c0 + c] * v[c];
                    ref += wx, mag += fabs(wx);
                }
                worst = worst_of(worst, fabs(o1[r] - ref) / (1e-6 * mag + 1e-30));
            }
            check(worst <= 1, "%s %d x %d: error %.2f x (1e-6 * sum |w x|)", kind ? "matvec_packed" : "key_scores",
                  n_rows, n_cols, worst);
        }
        // y += v^T w: attention's weighted sum of value rows; y starts nonzero (it accumulates)
        for (int c = 0; c < n_cols; c++) o1[c] = (float)c;
        weighted_rows(o1, w, ld, v, n_rows, n_cols);
        double worst = 0;
        for (int c = 0; c < n_cols; c++) {
            double ref = c, mag = fabs((double)c);
            for (int r = 0; r < n_rows; r++) { ref += (double)v[r] * w[r * ld + c]; mag += fabs((double)v[r] * w[r * ld + c]); }
            worst = worst_of(worst, fabs(o1[c] - ref) / (1e-6 * mag + 1e-30));
        }
        check(worst <= 1, "weighted_rows %d x %d: error %.2f x (1e-6 * sum |v w|)", n_rows, n_cols, worst);
    }
    free(packed);
    set_thread_count(saved);
    free(w); free(v); free(o1); free(o2);
    run_test_close(&net, &m, path);
}

// The cache layout: every (step, layer, position) entry has its own place. Keys live in blocks of
// 16 positions, and a region whose length is not a multiple of 16 is padded; a prompt of 5 leaves
// 19 shared positions per layer (24 - 5), so an unpadded layout would let layer 0's last block
// overlap layer 1's first. Each entry gets a distinct key and value; all must read back.
static void test_run_kv_layout(void) {
    const char *path = "ouro_test_run_model.bin";
    Ouro net;
    Model m;
    if (!run_test_open(&net, &m, path, 0, 41)) return;
    const Config *c = &m.cfg;
    int d = c->d, split = 5;
    RunState s;
    if (runstate_init(&s, &m, KV_FIRST, c->T, split, c->max_seq_len, 0)) {
        check(0, "runstate_init: %s", ouro_error);
        run_test_close(&net, &m, path);
        return;
    }
    // entry (t, l, pos) holds the value 1000 pos + 100 t + 10 l + i/d (values) or its negative (keys)
    for (int pos = 0; pos < s.seq_cap; pos++)
        for (int t = 0; t < (pos < split ? s.n_steps : 1); t++)
            for (int l = 0; l < c->L; l++) {
                for (int i = 0; i < d; i++) s.k[i] = -(s.v[i] = 1000.0f * pos + 100 * t + 10 * l + (float)i / d);
                kv_store(&s, t, l, pos);
            }
    int exact = 1;
    for (int pos = 0; pos < s.seq_cap; pos++)
        for (int t = 0; t < (pos < split ? s.n_steps : 1); t++)
            for (int l = 0; l < c->L; l++) {
                int shared = pos >= split, row = shared ? pos - split : pos;
                size_t region = shared ? shared_region(&s, l) : step_region(&s, t, l);
                const float *keys = shared ? s.key_shared : s.key_cache, *values = shared ? s.value_shared : s.value_cache;
                for (int i = 0; i < d; i++) {
                    float expect = 1000.0f * pos + 100 * t + 10 * l + (float)i / d;
                    exact &= keys[region + key_index(row, i, d)] == -expect && values[region + (size_t)row * d + i] == expect;
                }
            }
    check(exact, "KV layout: an entry written by kv_store does not read back (regions overlap?)");
    runstate_free(&s);
    run_test_close(&net, &m, path);
}

// The tests run on one thread, except test_run_threads: with more threads than free cores,
// OpenMP's spinning barriers make every small parallel region slow, and these models are tiny.
static void run_run_tests(void) {
    int saved = set_thread_count(1);
    test_run_decode_matches_forward();
    test_run_exit_policies();
    test_run_qexit_rule();
    test_run_prefill_exit();
    test_run_q1_with_a_certain_gate();
    test_run_kv_strategies();
    test_run_kv_layout();
    test_run_eval();
    test_run_context();
    test_run_sampling();
    test_run_loader_rejects();
    test_run_threads();
    set_thread_count(saved);
}
