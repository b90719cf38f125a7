// test_all.c: every test of ouro.c, in one program (llm.c style: it includes the code it tests).
// Exit status 1 on any failure; the last line is "N passed, N failed, N skipped".
//
//   make test       builds and runs it twice: test_all64 (-DOURO_DOUBLE, the model tests in double
//                   precision, where the gradient check is tight) and test_all (float, every test)
//
// Each check prints the failing quantity and its bound. Tests that need the real TinyStories
// samples in ../shared/data/tinystories skip, and say so, when that folder is absent.
#define _GNU_SOURCE           // nftw, to remove the tests' scratch folder
#include "ouro.c"
#define TESTING               // the programs below leave out their main()
#include "train.c"            // the trainer; it brings tinystories/data.c (tokenizer, shards) and plot.c
#include "tinystories/storygen.c"
#include <ftw.h>

// ----------------------------------------------------------------------------
// harness

static int tests_passed, tests_failed, tests_skipped;

// Records one assertion; prints the message when it fails. Returns ok.
__attribute__((format(printf, 2, 3)))
static int check(int ok, const char *fmt, ...) {
    if (ok) { tests_passed++; return 1; }
    tests_failed++;
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    return 0;
}

// Whether err is worse than the running worst error, where NaN is the worst of all and stays:
// fmax and `err > worst` both skip a NaN, so a NaN after the first element would pass.
static int is_worse(double err, double worst) { return !isnan(worst) && !(err <= worst); }
static double worst_of(double worst, double err) { return is_worse(err, worst) ? err : worst; }

// log sigmoid(z) = -log(1 + e^-z) in double, written the stable way round for either sign (z = 40:
// log(1 - sigmoid(z)) = log sigmoid(-40) = -40, where log(1 - sigmoid) would round to log 0 = -inf).
static double log_sigmoid_reference(double z) { return z >= 0 ? -log1p(exp(-z)) : z - log1p(exp(z)); }

__attribute__((format(printf, 1, 2)))
static void skip(const char *fmt, ...) {
    tests_skipped++;
    va_list ap;
    va_start(ap, fmt);
    printf("skip: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

// ../shared/data/tinystories from where the tests were started, found before main() moves into
// the scratch folder (NULL when absent).
static char shared_dir[256];
static const char *shared_data_dir(void) { return shared_dir[0] ? shared_dir : NULL; }

// Every temporary file of the tests is named ouro_test_* inside a folder of this process's own,
// /tmp/ouro_test_XXXXXX, so two test runs at once do not touch each other's files; it is removed
// at the end with what it still holds.
static char scratch_dir[64] = "/tmp/ouro_test_XXXXXX";

static void enter_scratch_dir(void) {
    char here[4096];
    struct stat st;
    int named = getcwd(here, sizeof here) &&
                snprintf(shared_dir, sizeof shared_dir, "%s/../shared/data/tinystories", here) < (int)sizeof shared_dir;
    if (!named || stat(shared_dir, &st) != 0 || !S_ISDIR(st.st_mode)) shared_dir[0] = 0;   // absent (or a cut path)
    if (!mkdtemp(scratch_dir) || chdir(scratch_dir) != 0) die("tests: cannot make or enter %s: %s", scratch_dir, strerror(errno));
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st, (void)type, (void)ftw;
    return remove(path);
}

static void leave_scratch_dir(void) {
    if (chdir("/tmp") == 0) nftw(scratch_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

// ----------------------------------------------------------------------------
// model fixtures

// The smallest model that still exercises everything: two heads, two layers, three steps.
static Config tiny_config(int tied) {
    Config c = {.V = 11, .d = 8, .H = 2, .F = 12, .L = 2, .T = 3, .max_seq_len = 8,
                .tied = tied, .rope_theta = 10000.0f, .norm_eps = 1e-6f};
    return c;
}

// Standard deviations of scrambled parameters: matrices and the gate's w and b ~ N(0, sd^2),
// norm weights ~ N(1, norm^2).
typedef struct { double matrix, exit_w, exit_b, norm; } Scramble;

// Moves every parameter away from its special initial value (norm weights 1, gate 0, small
// matrices), so that no gradient path is zero by symmetry: with exit_w = 0 the gate's path into
// h would contribute nothing and could not be checked.
static void scramble_params_by(Ouro *m, uint64_t seed, Scramble sd) {
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < N_PARAM_TENSORS; i++) {
        real *w = param_tensor(m->params_memory, m->param_sizes, i);
        for (size_t j = 0; j < m->param_sizes[i]; j++) {
            double r = rng_normal(&rng);
            w[j] = (real)(param_is_matrix[i] ? sd.matrix * r : i == P_EXIT_W ? sd.exit_w * r
                          : i == P_EXIT_B ? sd.exit_b * r : 1 + sd.norm * r);
        }
    }
}

// The scales of the gradient checks.
static void scramble_params(Ouro *m, uint64_t seed) { scramble_params_by(m, seed, (Scramble){0.4, 0.8, 0.5, 0.3}); }

static void random_tokens(int *x, size_t n, int V, Rng *rng) {
    for (size_t i = 0; i < n; i++) x[i] = (int)rng_below(rng, (uint64_t)V);
}

static double mode_loss(const Ouro *m, OuroMode mode) {
    return mode == OURO_STAGE2 ? m->metrics.loss_stage2 : m->metrics.loss_stage1;
}

// ----------------------------------------------------------------------------
// gradient check
//
// Central differences (L(w+h) - L(w-h)) / 2h against the analytic gradient, for every parameter
// tensor: all elements of tensors with at most 64 elements, 24 random ones of larger tensors.
// Each model variant is checked on B 2 x S 5 tokens; one more check (double build) runs B 6 x
// S 100, which crosses what a tiny batch never reaches: the attention's 48-row query/key blocks
// (S 100 = 48 + 48 + 4) and the LM head's 512-token chunks (N 600 = 512 + 88).
// Tolerance |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|):
//   double: h = 1e-5, and the differences at h and 2h combined (Richardson extrapolation) so that
//           their h^2 |L'''| / 6 truncation errors cancel, leaving O(h^4). The plain difference is
//           not enough everywhere: a scrambled model can sit near a steep spot, and with seed 8
//           instead of 7 below its h^2 error alone was up to 1100x the tolerance. Extrapolated,
//           every check with seeds 7, 8, 9 and 11 stays within 0.5 of it.
//           Rounding ~ 1e-16 |L| / h ~ 1e-11, so atol 1e-9, rtol 1e-6 leave a margin of 2-10x
//           or more (the run prints the worst ratio), while a wrong term (a missing path, a
//           factor 2, a sign) is off by 1e-3 or more.
//   float:  h = 1e-3. Rounding in the forward is ~1e-7 |L| per operation, so the difference
//           carries ~1e-4 of noise: atol 5e-4, rtol 1e-2. The double build is the tight check.
#ifdef OURO_DOUBLE
static const double GC_H = 1e-5, GC_ATOL = 1e-9, GC_RTOL = 1e-6;
#else
static const double GC_H = 1e-3, GC_ATOL = 5e-4, GC_RTOL = 1e-2;
#endif

// The loss with one weight set to value (B x S tokens, as in the model's last forward).
static double loss_at(Ouro *m, real *weight, double value, const int *inputs, const int *targets, OuroMode mode) {
    *weight = (real)value;
    ouro_forward(m, inputs, targets, m->B, m->S, m->cfg.T, OURO_EVAL);
    return mode_loss(m, mode);
}

// The model cfg on B x S random tokens (S <= cfg.max_seq_len).
static void gradient_check(const char *label, Config cfg, int B, int S, OuroMode mode, float beta) {
    Ouro m;
    if (!check(ouro_init(&m, &cfg, 1) == 0, "%s: init: %s", label, ouro_error)) return;
    scramble_params(&m, 7);
    m.obj.beta = beta;
    int *inputs = xmalloc((size_t)B * S * sizeof(int)), *targets = xmalloc((size_t)B * S * sizeof(int));
    Rng rng;
    rng_seed(&rng, 3);
    random_tokens(inputs, (size_t)B * S, cfg.V, &rng);
    random_tokens(targets, (size_t)B * S, cfg.V, &rng);

    ouro_zero_grad(&m);
    check(ouro_forward(&m, inputs, targets, B, S, cfg.T, mode) == 0, "%s: forward: %s", label, ouro_error);
    check(ouro_backward(&m) == 0, "%s: backward: %s", label, ouro_error);
    real *analytic = xmalloc(m.n_params * sizeof(real));
    memcpy(analytic, m.grads_memory, m.n_params * sizeof(real));
    double worst_ratio = 0;  // largest |analytic - numeric| / tolerance over all checked elements

    for (int i = 0; i < N_PARAM_TENSORS; i++) {
        size_t n = m.param_sizes[i];
        if (n == 0) continue;  // the head of a tied model is the embedding
        real *w = param_tensor(m.params_memory, m.param_sizes, i);
        real *a = param_tensor(analytic, m.param_sizes, i);
        int gate = i == P_EXIT_W || i == P_EXIT_B;
        if (mode == OURO_STAGE2 && !gate) {
            // Stage II trains the gate alone: every other gradient must be exactly zero.
            size_t nonzero = 0;
            for (size_t j = 0; j < n; j++) nonzero += a[j] != 0;
            check(nonzero == 0, "%s: %s has %zu non-zero gradients in Stage II", label, param_names[i], nonzero);
            continue;
        }
        size_t count = n <= 64 ? n : 24;
        double worst = 0, worst_a = 0, worst_n = 0;
        for (size_t s = 0; s < count; s++) {
            size_t j = n <= 64 ? s : (size_t)rng_below(&rng, n);
            real saved = w[j];
            double numeric = (loss_at(&m, w + j, saved + GC_H, inputs, targets, mode) -
                              loss_at(&m, w + j, saved - GC_H, inputs, targets, mode)) / (2 * GC_H);
#ifdef OURO_DOUBLE
            double wide = (loss_at(&m, w + j, saved + 2 * GC_H, inputs, targets, mode) -
                           loss_at(&m, w + j, saved - 2 * GC_H, inputs, targets, mode)) / (4 * GC_H);
            numeric = (4 * numeric - wide) / 3;   // Richardson: the h^2 terms of the two cancel
#endif
            w[j] = saved;
            double tolerance = GC_ATOL + GC_RTOL * fmax(fabs(a[j]), fabs(numeric));
            double excess = fabs(a[j] - numeric) - tolerance;
            worst_ratio = worst_of(worst_ratio, fabs(a[j] - numeric) / tolerance);
            if (s == 0 || is_worse(excess, worst)) { worst = excess; worst_a = a[j]; worst_n = numeric; }
        }
        check(worst <= 0, "%s: d%s analytic %.9g vs numeric %.9g exceeds atol %g + rtol %g",
              label, param_names[i], worst_a, worst_n, GC_ATOL, GC_RTOL);
    }
    printf("gradient check %-24s worst |analytic - numeric| = %.2g of the tolerance\n", label, worst_ratio);
    free(analytic); free(inputs); free(targets);
    ouro_free(&m);
}

static void test_gradients(void) {
    gradient_check("stage1 untied beta=0.1", tiny_config(0), 2, 5, OURO_STAGE1, 0.1f);
    gradient_check("stage1 tied beta=0.1", tiny_config(1), 2, 5, OURO_STAGE1, 0.1f);
    gradient_check("stage1 untied beta=0", tiny_config(0), 2, 5, OURO_STAGE1, 0.0f);
    gradient_check("stage2 untied", tiny_config(0), 2, 5, OURO_STAGE2, 0.1f);
    gradient_check("stage2 tied", tiny_config(1), 2, 5, OURO_STAGE2, 0.1f);
#ifdef OURO_DOUBLE
    // Across blocks and chunks: 3 attention blocks per sequence, 2 LM-head chunks per step, so a
    // backward that drops or misplaces a block's share fails here. One layer and two steps keep it
    // near 4 s (~425 elements, 4 forwards of 600 tokens each). Its worst ratio is ~0.2-0.5 (0.5
    // before the extrapolation), not ~0.05. Double only: float's atol 5e-4 is
    // a large part of these gradients (most are 1e-4..1e-1), so it would hide a missing share.
    Config wide = tiny_config(0);
    wide.L = 1; wide.T = 2; wide.max_seq_len = 100;
    gradient_check("stage1 B6 x S100", wide, 6, 100, OURO_STAGE1, 0.1f);
#endif
}

// ouro_backward takes the gradient of the last successful training forward, only that one and only
// once; AdamW then steps that objective's tensors. A Stage II forward allocates the gradients
// itself (it segfaulted without ouro_zero_grad first).
static void test_backward_needs_a_training_forward(void) {
    Config cfg = tiny_config(0);
    Ouro m;
    if (!check(ouro_init(&m, &cfg, 1) == 0, "init: %s", ouro_error)) return;
    int inputs[10], targets[10];
    Rng rng;
    rng_seed(&rng, 5);
    random_tokens(inputs, 10, cfg.V, &rng);
    random_tokens(targets, 10, cfg.V, &rng);
    check(ouro_backward(&m) == -1, "backward before any forward was accepted");
    check(ouro_forward(&m, inputs, targets, 2, 5, cfg.T, OURO_STAGE2) == 0, "stage 2 forward: %s", ouro_error);
    if (check(ouro_backward(&m) == 0, "stage 2 backward without ouro_zero_grad: %s", ouro_error)) {
        double gate = sum_squares(m.grads.exit_w, cfg.d) + (double)m.grads.exit_b[0] * m.grads.exit_b[0];
        check(isfinite(gate) && gate > 0, "stage 2 backward: the gate's gradient is %g", gate);
    }
    check(ouro_backward(&m) == -1, "a second backward of one forward was accepted (it adds the gradient twice)");
    // an evaluation forward between the Stage II backward and the step: still only the gate moves
    check(ouro_forward(&m, inputs, targets, 2, 5, cfg.T, OURO_EVAL) == 0, "eval forward: %s", ouro_error);
    check(ouro_backward(&m) == -1, "backward after an OURO_EVAL forward was accepted");
    real wq0 = m.params.wq[0], exit_b0 = m.params.exit_b[0];
    ouro_adamw(&m, 1e-2, 0.1);
    check(m.params.wq[0] == wq0 && m.params.exit_b[0] != exit_b0,
          "AdamW after a Stage II backward and an eval forward: wq moved (%g -> %g) or the gate did not",
          (double)wq0, (double)m.params.wq[0]);
    check(ouro_forward(&m, inputs, targets, 2, 5, cfg.T, OURO_STAGE1) == 0, "stage 1 forward: %s", ouro_error);
    inputs[3] = cfg.V;   // out of the vocabulary: this forward fails
    check(ouro_forward(&m, inputs, targets, 2, 5, cfg.T, OURO_STAGE1) == -1, "a bad token id was accepted");
    check(ouro_backward(&m) == -1, "backward after a failed forward took the one before it");
    ouro_free(&m);
}

// AdamW, clipping and the RoPE table against their formulas computed here in double: the gradient
// checks cannot see them (they are not part of the loss's derivative).
static void test_optimizer_clip_rope(void) {
    Config cfg = tiny_config(0);
    Ouro m;
    if (!check(ouro_init(&m, &cfg, 1) == 0, "init: %s", ouro_error)) return;
    ouro_zero_grad(&m);
    size_t n = m.n_params;
    double *w = xmalloc(n * sizeof(double)), *mo = xcalloc(n, sizeof(double)), *ve = xcalloc(n, sizeof(double));
    for (size_t j = 0; j < n; j++) w[j] = m.params_memory[j];
    const double lr = 0.01, wd = 0.1, b1 = 0.9, b2 = 0.95;
    for (int step = 1; step <= 3; step++) {
        for (size_t j = 0; j < n; j++) m.grads_memory[j] = (real)(0.01 * ((double)((j * 7 + step) % 11) - 5));
        ouro_adamw(&m, lr, wd);
        size_t off = 0;
        for (int i = 0; i < N_PARAM_TENSORS; i++) {
            for (size_t j = off; j < off + m.param_sizes[i]; j++) {
                double g = m.grads_memory[j];
                mo[j] = b1 * mo[j] + (1 - b1) * g;
                ve[j] = b2 * ve[j] + (1 - b2) * g * g;
                double mhat = mo[j] / (1 - pow(b1, step)), vhat = ve[j] / (1 - pow(b2, step));
                w[j] -= lr * (mhat / (sqrt(vhat) + 1e-8) + (param_is_matrix[i] ? wd * w[j] : 0));
            }
            off += m.param_sizes[i];
        }
    }
    double worst = 0;
    for (size_t j = 0; j < n; j++) worst = worst_of(worst, fabs(m.params_memory[j] - w[j]));
    check(worst < 1e-5, "AdamW after 3 steps differs from its formula by %g", worst);

    // clipping: a norm above max_norm is scaled down to it, one below is left alone
    for (size_t j = 0; j < n; j++) m.grads_memory[j] = (real)(j % 2 ? 0.03 : -0.04);
    double norm = sqrt(sum_squares(m.grads_memory, n));
    double returned = ouro_clip_grad(&m, norm / 2);
    double after = sqrt(sum_squares(m.grads_memory, n));
    check(fabs(returned - norm) < 1e-9 * norm && fabs(after - norm / 2) < 1e-5 * norm,
          "clip to half: returned %g (norm %g), norm after %g (want %g)", returned, norm, after, norm / 2);
    ouro_clip_grad(&m, after * 2);
    check(fabs(sqrt(sum_squares(m.grads_memory, n)) - after) < 1e-6 * after, "clip below max_norm changed the gradients");

    // RoPE: position pos, pair i rotates by pos * theta^(-2i/hd)
    int hd = cfg.d / cfg.H, half = hd / 2;
    double rope_worst = 0;
    for (int pos = 0; pos < cfg.max_seq_len; pos += 3)
        for (int i = 0; i < half; i++) {
            double angle = pos * pow(cfg.rope_theta, -2.0 * i / hd);
            rope_worst = worst_of(rope_worst, fabs(m.rope_cos[(size_t)pos * half + i] - cos(angle)));
            rope_worst = worst_of(rope_worst, fabs(m.rope_sin[(size_t)pos * half + i] - sin(angle)));
        }
    check(rope_worst < 1e-6, "RoPE table differs from cos/sin(pos theta^(-2i/hd)) by %g", rope_worst);
    free(w); free(mo); free(ve);
    ouro_free(&m);
}

// The learning-rate schedule: linear warmup to lr, then a cosine down to min_lr_frac * lr.
static void test_lr_schedule(void) {
    TrainOptions o = options_default();
    o.lr = 1e-2; o.warmup = 10; o.steps = 110; o.min_lr_frac = 0.1;
    double floor = o.lr * o.min_lr_frac;
    struct { int step; double want; } cases[] = {
        {0, o.lr / 10}, {4, o.lr / 2}, {9, o.lr}, {10, o.lr}, {60, (o.lr + floor) / 2}, {110, floor}, {500, floor},
    };
    for (int i = 0; i < 7; i++)
        check(fabs(lr_at(&o, cases[i].step) - cases[i].want) < 1e-12, "lr at step %d is %g, want %g",
              cases[i].step, lr_at(&o, cases[i].step), cases[i].want);
}

// Stage II's loss by hand (the gradient check cannot see the direction of the improvement I_t:
// CE is a constant there). T = 2, one token, CE 2 then 1: step 2 improved by I_2 = 1 >> gamma, so
// w_2 = sigmoid(k (I_2 - gamma)) ~ 1 and lambda_2's target 1 - w_2 ~ 0. The loss is then
// -log(1 - lambda_2) / T = softplus(z_2) / 2, and dz_2 > 0 pushes lambda_2 down (t = 1 has no target).
static void test_stage2_loss_value(void) {
    real ce[2] = {2, 1}, z[2] = {0, 2}, loss[1], dz[2];
    stage2_loss(loss, dz, ce, z, 50, 0.005f, 2, 1);
    double want = 0.5 * log1p(exp(2.0));
    check(fabs(loss[0] - want) < 1e-5, "stage 2 loss %g, want softplus(2)/2 = %g", (double)loss[0], want);
    check(dz[1] > 0, "stage 2: dz_2 = %g should push lambda_2 down (to 1 - w_2 = 0)", (double)dz[1]);
}

// Training windows: targets are the inputs shifted by one token, and no window reads past the
// shard. The shard is a ramp (token i = i) of S + 1 tokens followed by a sentinel it must not reach.
static void test_next_batch(void) {
    Trainer tr;
    memset(&tr, 0, sizeof tr);
    tr.opt.B = 4; tr.opt.S = 8;
    int S = tr.opt.S, N = tr.opt.B * S;
    tr.n_train = (size_t)S + 1;
    tr.train_tokens = xmalloc((tr.n_train + 1) * sizeof(uint16_t));
    for (size_t i = 0; i <= tr.n_train; i++) tr.train_tokens[i] = i < tr.n_train ? (uint16_t)i : 0xFFFF;
    tr.inputs = xmalloc(N * sizeof(int)); tr.targets = xmalloc(N * sizeof(int));
    rng_seed(&tr.rng, 3);
    int bad = 0;
    for (int draw = 0; draw < 64; draw++) {
        next_batch(&tr);
        for (int i = 0; i < N; i++) bad += tr.targets[i] != tr.inputs[i] + 1 || tr.targets[i] > S;
    }
    check(bad == 0, "next_batch: %d targets are not the next token, or lie past the shard", bad);
    free(tr.train_tokens); free(tr.inputs); free(tr.targets);
}

// ----------------------------------------------------------------------------
// exit distribution

static void test_exit_distribution(void) {
    enum { T = 5, N = 7 };
    real z[T * N], log_p[T * N], p[T * N];
    Rng rng;
    rng_seed(&rng, 11);
    for (int i = 0; i < T * N; i++) z[i] = (real)(3 * rng_normal(&rng));
    z[0] = 40;   // a token that is certain to stop at once: log space must not produce NaN
    z[1] = -40;  // and one that is certain to go on
    exit_distribution_forward(log_p, p, z, T, N);
    double worst_sum = 0, worst_formula = 0, worst_log = 0;
    for (int n = 0; n < N; n++) {
        double sum = 0, survive = 1, log_survive = 0;
        for (int t = 0; t < T; t++) {
            double zt = z[t * N + n], lambda = 1 / (1 + exp(-zt));
            double expect = t < T - 1 ? lambda * survive : survive;  // p(t) = lambda_t prod_{j<t} (1 - lambda_j)
            worst_formula = worst_of(worst_formula, fabs(p[t * N + n] - expect));
            // log p(t) = log lambda_t + sum_{j<t} log(1 - lambda_j), in double
            double log_expect = t < T - 1 ? log_sigmoid_reference(zt) + log_survive : log_survive;
            worst_log = worst_of(worst_log, fabs(log_p[t * N + n] - log_expect) / fmax(1, fabs(log_expect)));
            log_survive += log_sigmoid_reference(-zt);   // log(1 - lambda) = log sigmoid(-z)
            survive *= 1 - lambda;
            sum += p[t * N + n];
        }
        worst_sum = worst_of(worst_sum, fabs(sum - 1));
    }
    check(worst_sum < 1e-6, "exit distribution sums to 1: worst |sum - 1| = %g > 1e-6", worst_sum);
    check(worst_formula < 1e-6, "exit distribution vs survival product: worst error %g > 1e-6", worst_formula);
    check(worst_log < 1e-5, "log p(t) vs a double-precision reference: worst relative error %g > 1e-5 (z = +-40 "
          "must stay finite)", worst_log);

    // T = 1: the only step takes everything and the entropy is zero.
    Config cfg = tiny_config(0);
    cfg.T = 1;
    Ouro m;
    ouro_init(&m, &cfg, 2);
    scramble_params(&m, 5);
    int x[10], y[10];
    random_tokens(x, 10, cfg.V, &rng);
    random_tokens(y, 10, cfg.V, &rng);
    ouro_forward(&m, x, y, 2, 5, 1, OURO_EVAL);
    check(m.metrics.p[0] == 1, "T=1: mean p(1) = %.9g, expected exactly 1", m.metrics.p[0]);
    check(m.metrics.entropy == 0, "T=1: entropy = %g, expected 0", m.metrics.entropy);
    check(m.metrics.mean_exit_step == 1, "T=1: mean exit step %.9g, expected exactly 1 (steps count from 1)",
          m.metrics.mean_exit_step);
    check(fabs(m.metrics.loss_stage1 - m.metrics.ce[0]) < 1e-6, "T=1: loss %.9g != CE %.9g",
          m.metrics.loss_stage1, m.metrics.ce[0]);
    ouro_free(&m);
}

// The entropy bonus changes the loss by exactly beta * H and nothing else.
static void test_entropy_term(void) {
    Config cfg = tiny_config(0);
    Ouro m;
    if (!check(ouro_init(&m, &cfg, 4) == 0, "entropy: init: %s", ouro_error)) return;
    scramble_params(&m, 9);
    int x[10], y[10];
    Rng rng;
    rng_seed(&rng, 21);
    random_tokens(x, 10, cfg.V, &rng);
    random_tokens(y, 10, cfg.V, &rng);
    m.obj.beta = 0;
    int ok = ouro_forward(&m, x, y, 2, 5, cfg.T, OURO_EVAL) == 0;
    Metrics m0 = m.metrics;
    m.obj.beta = 0.1f;
    ok &= ouro_forward(&m, x, y, 2, 5, cfg.T, OURO_EVAL) == 0;
    Metrics m1 = m.metrics;
    if (!check(ok && m0.entropy > 0, "entropy: forward: %s (entropy %g)", ouro_error, m0.entropy)) { ouro_free(&m); return; }
    double expect = m0.loss_stage1 - 0.1f * m0.entropy;
    check(fabs(m1.loss_stage1 - expect) < 1e-6, "beta: loss(0.1) = %.9g, loss(0) - 0.1 H = %.9g", m1.loss_stage1, expect);
    check(fabs(m0.loss_stage1 - m0.expected_ce) < 1e-6, "beta=0: loss %.9g != expected CE %.9g", m0.loss_stage1, m0.expected_ce);
    int same = m0.entropy == m1.entropy && m0.expected_ce == m1.expected_ce;
    for (int t = 0; t < cfg.T; t++) same &= m0.ce[t] == m1.ce[t] && m0.p[t] == m1.p[t];
    check(same, "beta changes the CE or the exit distribution, not only the loss");
    ouro_free(&m);
}

// The bookkeeping of evaluation, on a 2T-step OURO_EVAL forward as train.c's evaluate runs it:
// mean_exit_step = sum_t t p(t) with steps counted from 1; ouro_qexit_ce reads q = 0 at step 1
// and q = 1 at step T, never at the extrapolated steps T+1..2T; and q = 1 never stops early, even
// when a CDF rounds to exactly 1 (a gate logit above ~17).
static void test_metrics_and_qexit(void) {
    Config cfg = tiny_config(0);
    Ouro m;
    if (!check(ouro_init(&m, &cfg, 6) == 0, "init: %s", ouro_error)) return;
    scramble_params(&m, 15);
    int x[10], y[10], T = cfg.T;
    Rng rng;
    rng_seed(&rng, 31);
    random_tokens(x, 10, cfg.V, &rng);
    random_tokens(y, 10, cfg.V, &rng);
    if (!check(ouro_forward(&m, x, y, 2, 5, 2 * T, OURO_EVAL) == 0, "forward: %s", ouro_error)) { ouro_free(&m); return; }
    double mean = 0, depth0, depth1;
    for (int t = 0; t < T; t++) mean += (t + 1) * m.metrics.p[t];
    check(fabs(m.metrics.mean_exit_step - mean) < 1e-6, "mean exit step %.9g, sum_t t p(t) = %.9g",
          m.metrics.mean_exit_step, mean);
    double ce0 = ouro_qexit_ce(&m, 0.0, &depth0), ce1 = ouro_qexit_ce(&m, 1.0, &depth1);
    check(depth0 == 1 && fabs(ce0 - m.metrics.ce[0]) < 1e-9, "Q-exit q=0: depth %g, CE %.9g (want 1, CE_1 %.9g)",
          depth0, ce0, m.metrics.ce[0]);
    check(depth1 == T && fabs(ce1 - m.metrics.ce[T - 1]) < 1e-9, "Q-exit q=1: depth %g, CE %.9g (want %d, CE_T %.9g)",
          depth1, ce1, T, m.metrics.ce[T - 1]);
    check(!qexit_stop(1.0, 1.0) && qexit_stop(1.0, 0.999) && !qexit_stop(0.5, 0.6),
          "qexit_stop: a CDF of 1 stops q = 1, or the CDF is not compared with q");
    // 0 < q < 1: each token leaves at the first step whose CDF, p(1) + ... + p(t), reaches q (by
    // the definition, from the forward's p and CE), and some tokens leave at a middle step
    int N = 10, middle = 0;
    const real *p = m.acts->p, *ce = m.acts->ce;
    for (int qi = 0; qi < 3; qi++) {
        double q = 0.3 + 0.2 * qi, want_ce = 0, want_depth = 0, depth;
        for (int n = 0; n < N; n++) {
            double cdf = 0;
            int t = 1;   // the exit step, from 1
            for (; t < T; t++) {
                cdf += p[(size_t)(t - 1) * N + n];
                if (cdf >= q) break;
            }
            want_ce += ce[(size_t)(t - 1) * N + n];
            want_depth += t;
            middle += t > 1 && t < T;
        }
        want_ce /= N, want_depth /= N;
        double got_ce = ouro_qexit_ce(&m, q, &depth);
        check(fabs(got_ce - want_ce) < 1e-9 && fabs(depth - want_depth) < 1e-9,
              "Q-exit q=%g: CE %.9g, depth %g (want %.9g, %g: the first step whose CDF reaches q)", q, got_ce,
              depth, want_ce, want_depth);
    }
    check(middle > 0, "Q-exit: no token left at a middle step for q = 0.3, 0.5, 0.7: the check above is weak");
    ouro_free(&m);
}

// ----------------------------------------------------------------------------
// training: AdamW overfits one batch

static void test_overfit(void) {
    Config cfg = {.V = 32, .d = 32, .H = 2, .F = 64, .L = 1, .T = 2, .max_seq_len = 16,
                  .tied = 0, .rope_theta = 10000.0f, .norm_eps = 1e-6f};
    Ouro m;
    ouro_init(&m, &cfg, 42);
    int B = 2, S = 16, x[32], y[32];
    Rng rng;
    rng_seed(&rng, 5);
    random_tokens(x, 32, cfg.V, &rng);
    random_tokens(y, 32, cfg.V, &rng);
    double first = 0, last = 0;
    for (int step = 0; step < 300; step++) {
        ouro_zero_grad(&m);
        ouro_forward(&m, x, y, B, S, cfg.T, OURO_STAGE1);
        ouro_backward(&m);
        ouro_clip_grad(&m, 1.0);
        ouro_adamw(&m, 1e-2, 0.0);
        if (step == 0) first = m.metrics.expected_ce;
        last = m.metrics.expected_ce;
    }
    // 32 random targets: a uniform guess costs ln 32 = 3.47 nats; memorised, close to 0.
    check(first > 3.0 && last < 0.1, "overfit: expected CE %.4f -> %.4f after 300 AdamW steps, want < 0.1", first, last);
    ouro_free(&m);
}

// ----------------------------------------------------------------------------
// checkpoints

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (f) { fwrite(data, 1, n, f); fclose(f); }
}

static void test_checkpoint(void) {
    const char *path = "ouro_test_ckpt.bin", *bad = "ouro_test_bad.bin";
    Config cfg = tiny_config(0);
    Ouro m, r;
    ouro_init(&m, &cfg, 8);
    int x[10], y[10];
    Rng rng;
    rng_seed(&rng, 31);
    random_tokens(x, 10, cfg.V, &rng);
    random_tokens(y, 10, cfg.V, &rng);
    for (int i = 0; i < 3; i++) {  // a few steps so the moments are non-trivial
        ouro_zero_grad(&m);
        ouro_forward(&m, x, y, 2, 5, cfg.T, OURO_STAGE1);
        ouro_backward(&m);
        ouro_adamw(&m, 1e-2, 0.1);
    }
    check(ouro_save_checkpoint(&m, path, 12345, 678) == 0, "checkpoint save: %s", ouro_error);
    uint64_t rs = 0, dp = 0;
    int loaded = ouro_load_checkpoint(&r, path, &rs, &dp) == 0;
    if (check(loaded, "checkpoint load: %s", ouro_error)) {
        size_t bytes = m.n_params * sizeof(real);
        int same = r.n_params == m.n_params && memcmp(&r.cfg, &m.cfg, sizeof(Config)) == 0 &&
                   memcmp(r.params_memory, m.params_memory, bytes) == 0 && memcmp(r.adam_m, m.adam_m, bytes) == 0 &&
                   memcmp(r.adam_v, m.adam_v, bytes) == 0 && r.step == m.step && rs == 12345 && dp == 678;
        check(same, "checkpoint round trip is not exact");
        ouro_free(&r);
    }

    // corrupt files are rejected with a message, never a crash
    char *buf = NULL;
    size_t len = 0;
    if (!check(read_file(path, 1 << 30, &buf, &len) == 0, "re-reading the checkpoint: %s", ouro_error)) return;
    write_bytes(bad, buf, len - 5);
    check(ouro_load_checkpoint(&r, bad, NULL, NULL) != 0 && strstr(ouro_error, "bytes"),
          "truncated checkpoint accepted (error: %s)", ouro_error);
    write_bytes(bad, buf, 100);
    check(ouro_load_checkpoint(&r, bad, NULL, NULL) != 0, "checkpoint shorter than its header accepted");
    buf[0] = 'X';
    write_bytes(bad, buf, len);
    check(ouro_load_checkpoint(&r, bad, NULL, NULL) != 0 && strstr(ouro_error, "magic"),
          "wrong magic accepted (error: %s)", ouro_error);
    buf[0] = 'O';
    CheckpointHeader *hdr = (CheckpointHeader *)buf;
    hdr->config.d = 1 << 30; hdr->config.H = 1 << 28; hdr->config.L = 1 << 30; hdr->config.F = 1 << 30;
    write_bytes(bad, buf, len);
    check(ouro_load_checkpoint(&r, bad, NULL, NULL) != 0 && strstr(ouro_error, "overflow"),
          "overflowing config accepted (error: %s)", ouro_error);
    hdr->config = cfg;
    hdr->config.H = 3;
    write_bytes(bad, buf, len);
    check(ouro_load_checkpoint(&r, bad, NULL, NULL) != 0 && strstr(ouro_error, "divisible"),
          "invalid config accepted (error: %s)", ouro_error);
    hdr->config = cfg;
    hdr->version = 99;
    write_bytes(bad, buf, len);
    check(ouro_load_checkpoint(&r, bad, NULL, NULL) != 0 && strstr(ouro_error, "version"),
          "wrong version accepted (error: %s)", ouro_error);
    hdr->version = CKPT_VERSION;
    hdr->step = 0xFFFFFFFFull;  // (int) of it is -1: the trainer would index its loss array at -1
    write_bytes(bad, buf, len);
    check(ouro_load_checkpoint(&r, bad, NULL, NULL) != 0 && strstr(ouro_error, "step"),
          "step 2^32 - 1 accepted (error: %s)", ouro_error);
    hdr->step = m.step;
    hdr->n_params = m.n_params + 1;   // the config implies n_params: a header that disagrees is corrupt
    write_bytes(bad, buf, len);
    check(ouro_load_checkpoint(&r, bad, NULL, NULL) != 0, "checkpoint whose n_params disagrees with its config accepted");
    hdr->n_params = m.n_params;
    hdr->reserved[39] = 1;
    write_bytes(bad, buf, len);
    check(ouro_load_checkpoint(&r, bad, NULL, NULL) != 0 && strstr(ouro_error, "reserved"),
          "non-zero reserved bytes accepted (error: %s)", ouro_error);
    hdr->reserved[39] = 0;
    // the three arrays follow the header: params, adam_m, adam_v; the last value of each is
    // the last of the last tensor
    real *arrays = (real *)(buf + sizeof *hdr), nan_value = NAN, minus_one = -1, saved_value;
    const char *last_tensor = param_names[N_PARAM_TENSORS - 1];
    struct { size_t at; real value; const char *what; } bad_values[] = {
        {m.n_params - 1, nan_value, "non-finite parameter"},
        {2 * m.n_params - 1, nan_value, "non-finite first moment"},
        {3 * m.n_params - 1, minus_one, "negative second moment"},
    };
    for (int i = 0; i < 3; i++) {
        memcpy(&saved_value, arrays + bad_values[i].at, sizeof(real));
        memcpy(arrays + bad_values[i].at, &bad_values[i].value, sizeof(real));
        write_bytes(bad, buf, len);
        check(ouro_load_checkpoint(&r, bad, NULL, NULL) != 0 && strstr(ouro_error, bad_values[i].what) &&
              strstr(ouro_error, last_tensor), "%s accepted (error: %s)", bad_values[i].what, ouro_error);
        memcpy(arrays + bad_values[i].at, &saved_value, sizeof(real));
    }
    write_bytes(bad, buf, len);
    check(ouro_load_checkpoint(&r, bad, NULL, NULL) == 0, "the restored checkpoint is rejected: %s", ouro_error);
    ouro_free(&r);
    check(ouro_load_checkpoint(&r, "/tmp/ouro_no_such_file", NULL, NULL) != 0, "missing checkpoint accepted");
    struct stat dev;  // saving over a device would rename a regular file over it
    check(ouro_save_checkpoint(&m, "/dev/null", 1, 0) != 0 && strstr(ouro_error, "not a regular file") &&
          stat("/dev/null", &dev) == 0 && S_ISCHR(dev.st_mode), "a checkpoint was saved over /dev/null: '%s'", ouro_error);
    free(buf);
    remove(path);
    remove(bad);
    ouro_free(&m);

    Config huge = tiny_config(0);
    huge.d = 1 << 30; huge.H = 1 << 28; huge.L = 1 << 30; huge.F = 1 << 30;
    check(ouro_init(&m, &huge, 1) != 0, "a config whose parameter count overflows was accepted");
}

// ----------------------------------------------------------------------------
// matmul against the definition

// C = op(A) op(B) (+ C) by its definition, summed in double.
static void matmul_reference(double *C, const real *A, int lda, int transA, const real *B, int ldb,
                             int transB, int M, int N, int K) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double sum = 0;
            for (int k = 0; k < K; k++)
                sum += (double)(transA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) *
                       (transB ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
            C[(size_t)i * N + j] += sum;
        }
}

// xmalloc_huge (common.h): from exactly 1 MiB up (where Linux's hint exists) the block starts on a
// 2 MiB boundary, where a huge page can back it, and every byte asked for is usable (ASan checks
// the bounds); a small block is usable too.
static void test_xmalloc_huge(void) {
    size_t sizes[2] = {(size_t)1 << 20, ((size_t)3 << 20) + 5};
    for (int i = 0; i < 2; i++) {
        unsigned char *p = xmalloc_huge(sizes[i]);
#ifdef MADV_HUGEPAGE
        check((uintptr_t)p % ((size_t)2 << 20) == 0, "xmalloc_huge(%zu) is not 2 MiB aligned: %p", sizes[i], (void *)p);
#endif
        memset(p, 1, sizes[i]);
        check(p[0] == 1 && p[sizes[i] - 1] == 1, "xmalloc_huge(%zu) does not hold what was written", sizes[i]);
        free(p);
    }
    unsigned char *q = xmalloc_huge(1000);
    memset(q, 1, 1000);
    check(q[0] == 1 && q[999] == 1, "xmalloc_huge(1000) does not hold what was written");
    free(q);
}

// Every (transA, transB, accumulate) case on shapes that cross each blocking boundary: partial
// MR x NR tiles, K past one KC group and past one packed depth, several A blocks, a B panel
// split in two, and N <= 4 NR, where op(A) is read in place (with and without a partial last
// sliver), and a few rows with K cut into parts: 2, 3, 7 (8 before rounding to whole KC groups)
// and 8 (the most), each part on one thread when the threads divide the parts evenly, else split
// by rows. Leading dimensions are wider than the matrices. 1, 2 and 3 threads must agree bitwise.
// K = 0 is an empty sum: its bound 1e-6 K = 0 demands C = 0 exactly, or C unchanged when
// accumulating (no model product has K = 0, but it is matmul's documented contract).
static void test_matmul(void) {
    static const int shapes[][3] = {   // M, N, K
        {1, 1, 1}, {5, 17, 3}, {6, 16, 256}, {7, 33, 257}, {13, 64, 31}, {64, 32, 200},
        {60, 65, 9}, {300, 40, 300}, {100, 130, 800}, {7, 4100, 257}, {20, 40, 2100}, {13, 70, 3300},
        {20, 40, 8200}, {13, 70, 9300}, {5, 17, 0},
    };
    Rng rng;
    rng_seed(&rng, 21);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], pad = 3;
        for (int transA = 0; transA < 2; transA++)
            for (int transB = 0; transB < 2; transB++)
                for (int acc = 0; acc < 2; acc++) {
                    int lda = (transA ? M : K) + pad, ldb = (transB ? K : N) + pad, ldc = N + pad;
                    size_t na = (size_t)(transA ? K : M) * lda, nb = (size_t)(transB ? N : K) * ldb, nc = (size_t)M * ldc;
                    real *A = xmalloc(na * sizeof(real)), *B = xmalloc(nb * sizeof(real));
                    real *C[3] = {xmalloc(nc * sizeof(real)), xmalloc(nc * sizeof(real)), xmalloc(nc * sizeof(real))};
                    real *C0 = xmalloc(nc * sizeof(real));
                    double *want = xmalloc((size_t)M * N * sizeof(double));
                    for (size_t i = 0; i < na; i++) A[i] = (real)(2 * rng_uniform(&rng) - 1);
                    for (size_t i = 0; i < nb; i++) B[i] = (real)(2 * rng_uniform(&rng) - 1);
                    for (size_t i = 0; i < nc; i++) C0[i] = C[0][i] = C[1][i] = C[2][i] = (real)(2 * rng_uniform(&rng) - 1);
                    for (int i = 0; i < M; i++)
                        for (int j = 0; j < N; j++) want[(size_t)i * N + j] = acc ? C[0][(size_t)i * ldc + j] : 0;
                    matmul_reference(want, A, lda, transA, B, ldb, transB, M, N, K);
                    for (int t = 0; t < 3; t++) {
                        set_threads(t + 1);
                        matmul(C[t], ldc, A, lda, transA, B, ldb, transB, M, N, K, acc);
                    }
                    set_threads(max_threads());
                    double worst = 0, bound = (sizeof(real) == 4 ? 1e-6 : 1e-14) * K;
                    int padding_kept = 1;
                    for (int i = 0; i < M; i++) {
                        for (int j = 0; j < N; j++) {
                            double err = fabs(C[0][(size_t)i * ldc + j] - want[(size_t)i * N + j]);
                            worst = worst_of(worst, err);
                        }
                        for (int j = N; j < ldc; j++) padding_kept &= C[0][(size_t)i * ldc + j] == C0[(size_t)i * ldc + j];
                    }
                    check(worst <= bound && padding_kept,
                          "matmul %dx%dx%d transA %d transB %d accumulate %d: error %.3g (bound %.3g)%s",
                          M, N, K, transA, transB, acc, worst, bound, padding_kept ? "" : ", wrote past N");
                    for (int t = 1; t < 3; t++)
                        check(memcmp(C[0], C[t], nc * sizeof(real)) == 0,
                              "matmul %dx%dx%d transA %d transB %d: 1 and %d threads differ", M, N, K, transA, transB, t + 1);
                    free(A); free(B); free(C[0]); free(C[1]); free(C[2]); free(C0); free(want);
                }
    }
}

// fast_exp (the float build's exp for softmaxes and SwiGLU) against libm's, in ulps of the exact
// result, over its whole range [-87, 88] (a fine sweep plus the points where 2^n changes); the
// clamp outside it; NaN and infinities giving NaN; and softmax_exp's sum, including its scalar
// tail (n not a multiple of 8). The double build uses libm's exp itself, so this is float only.
static void test_fast_exp(void) {
#ifndef OURO_DOUBLE
    double worst = 0, worst_x = 0;
    for (int i = 0; i <= 400000; i++) {
        float x = -87.0f + 175.0f * (float)i / 400000;
        for (int edge = 0; edge < 2; edge++) {
            if (edge) x = (float)(round(x / M_LN2) + 0.5) * (float)M_LN2;  // where round(x / ln2) steps
            if (x < -87.0f || x > 88.0f) continue;
            double want = exp((double)x), ulp = ldexp(1.0, ilogb(want) - 23);
            double err = fabs(fast_exp(x) - want) / ulp;
            if (is_worse(err, worst)) worst = err, worst_x = x;
        }
    }
    check(worst <= 1.5, "fast_exp: %.2f ulp from exp at x = %.6g (bound 1.5)", worst, worst_x);
    float tiny = fast_exp(-100.0f), huge = fast_exp(100.0f);
    check(tiny > 0 && tiny == fast_exp(-87.0f) && tiny < 1e-37f, "fast_exp(-100) = %g: want exp(-87), a normal float", tiny);
    check(isfinite(huge) && huge == fast_exp(88.0f), "fast_exp(100) = %g: want exp(88)", huge);
    // the clamp is two integer minimums on the bits (unsigned, then signed): the extreme floats
    // land on the bounds, and the floats next to 0 (+-0, the smallest subnormals), which sit at
    // the ends of the two integer orders, are left alone
    check(fast_exp(-FLT_MAX) == tiny && fast_exp(FLT_MAX) == huge, "fast_exp(-+FLT_MAX) = %g, %g: want exp(-87), exp(88)",
          fast_exp(-FLT_MAX), fast_exp(FLT_MAX));
    float near_zero[4] = {0.0f, -0.0f, 1e-45f, -1e-45f};
    for (int i = 0; i < 4; i++)
        check(fast_exp(near_zero[i]) == 1.0f, "fast_exp(%g) = %.9g: want 1", near_zero[i], fast_exp(near_zero[i]));
    check(fast_exp(-86.99f) > tiny && fast_exp(87.99f) < huge, "fast_exp just inside [-87, 88] must not be clamped");
    check(isnan(fast_exp(NAN)) && isnan(fast_exp(INFINITY)) && isnan(fast_exp(-INFINITY)),
          "fast_exp of NaN, +inf, -inf: want NaN");
    for (int n = 1; n <= 21; n += 5) {  // 1, 6, 11, 16, 21: tails of 1, 6, 3, 0 and 5 values
        real x[21];
        double want = 0, worst_rel = 0;
        for (int j = 0; j < n; j++) x[j] = (real)(0.37 * j - 3), want += exp(0.5 * x[j] - 1);
        real want_each[21];
        for (int j = 0; j < n; j++) want_each[j] = (real)exp(0.5 * x[j] - 1);
        double sum = softmax_exp(x, n, 0.5f, 1.0f);
        for (int j = 0; j < n; j++) {
            double rel = fabs(x[j] - want_each[j]) / want_each[j];
            worst_rel = worst_of(worst_rel, rel);
        }
        check(fabs(sum - want) <= 1e-6 * want && worst_rel <= 3e-7,
              "softmax_exp n = %d: sum %.9g (want %.9g), worst element %.2g relative", n, sum, want, worst_rel);
    }
#endif
}

// attention_forward / attention_backward against their definition, in double, at real head
// sizes: hd 32 (two whole 16-wide slivers, the bench models) and 20 (a partial one), S 100 (two
// whole 48-row blocks and a partial one, partial 6-row slivers), and at hd 4 > S 3, where the
// deepest product is q k^T. y, lse, dq, dk, dv are compared; 1 and 2 threads must agree bitwise.
static void test_attention(void) {
    static const int shapes[][3] = {{2, 100, 32}, {2, 100, 20}, {3, 3, 4}};   // H, S, hd
    Rng rng;
    rng_seed(&rng, 31);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int B = 2, H = shapes[s][0], S = shapes[s][1], hd = shapes[s][2], d = H * hd;
        size_t n = (size_t)B * S * d;
        real *in = xmalloc(4 * n * sizeof(real)), *q = in, *k = q + n, *v = k + n, *dy = v + n;
        real *out[2], *lse[2];
        double *want = xcalloc(4 * n, sizeof(double)), *w_y = want, *w_dq = w_y + n, *w_dk = w_dq + n, *w_dv = w_dk + n;
        double *w_lse = xmalloc((size_t)B * H * S * sizeof(double)), *P = xmalloc((size_t)S * S * sizeof(double));
        for (size_t i = 0; i < 4 * n; i++) in[i] = (real)rng_normal(&rng);
        // the definition, one (sequence, head) at a time
        double scale = 1 / sqrt((double)hd);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                size_t off = (size_t)b * S * d + (size_t)h * hd;
                #define AT(X, i, c) X[off + (size_t)(i) * d + (c)]
                for (int i = 0; i < S; i++) {
                    double mx = -INFINITY, sum = 0;
                    for (int j = 0; j <= i; j++) {
                        double a = 0;
                        for (int c = 0; c < hd; c++) a += (double)AT(q, i, c) * AT(k, j, c);
                        P[(size_t)i * S + j] = scale * a;
                        mx = fmax(mx, scale * a);
                    }
                    for (int j = 0; j <= i; j++) sum += exp(P[(size_t)i * S + j] - mx);
                    w_lse[((size_t)b * H + h) * S + i] = mx + log(sum);
                    for (int j = 0; j <= i; j++) P[(size_t)i * S + j] = exp(P[(size_t)i * S + j] - mx) / sum;
                }
                for (int i = 0; i < S; i++) {
                    double dot = 0, dP[512];   // dP_ij = dy_i . v_j, for j <= i (S <= 512 here)
                    for (int j = 0; j <= i; j++) {
                        dP[j] = 0;
                        for (int c = 0; c < hd; c++) {
                            AT(w_y, i, c) += P[(size_t)i * S + j] * AT(v, j, c);
                            AT(w_dv, j, c) += P[(size_t)i * S + j] * AT(dy, i, c);
                            dP[j] += (double)AT(dy, i, c) * AT(v, j, c);
                        }
                        dot += P[(size_t)i * S + j] * dP[j];
                    }
                    for (int j = 0; j <= i; j++) {
                        double ds = scale * P[(size_t)i * S + j] * (dP[j] - dot);
                        for (int c = 0; c < hd; c++) {
                            AT(w_dq, i, c) += ds * AT(k, j, c);
                            AT(w_dk, j, c) += ds * AT(q, i, c);
                        }
                    }
                }
                #undef AT
            }
        for (int t = 0; t < 2; t++) {
            set_threads(t + 1);
            out[t] = xmalloc(4 * n * sizeof(real));
            lse[t] = xmalloc((size_t)B * H * S * sizeof(real));
            real *scratch = xmalloc((size_t)(t + 1) * 2 * S * S * sizeof(real));
            attention_forward(out[t], lse[t], scratch, q, k, v, B, S, d, H, t + 1);
            attention_backward(out[t] + n, out[t] + 2 * n, out[t] + 3 * n, scratch, dy, q, k, v, lse[t], B, S, d, H, t + 1);
            free(scratch);
        }
        set_threads(max_threads());
        // errors relative to the largest entry of each tensor: measured up to 7e-7 in float and
        // 8e-16 in double, so the bounds leave 10-100x (a 1e-4 change to one edge sliver fails)
        const char *names[4] = {"y", "dq", "dk", "dv"};
        double tol = sizeof(real) == 4 ? 1e-5 : 1e-13;
        for (int x = 0; x < 4; x++) {
            double worst = 0, largest = 0;
            for (size_t i = 0; i < n; i++) {
                worst = worst_of(worst, fabs(out[0][x * n + i] - want[x * n + i]));
                largest = fmax(largest, fabs(want[x * n + i]));
            }
            check(worst <= tol * largest, "attention H %d S %d hd %d: %s off by %.3g of its largest entry",
                  H, S, hd, names[x], worst / largest);
        }
        double worst_lse = 0;
        for (int i = 0; i < B * H * S; i++) worst_lse = worst_of(worst_lse, fabs(lse[0][i] - w_lse[i]));
        check(worst_lse <= tol * 10, "attention H %d S %d hd %d: lse off by %.3g", H, S, hd, worst_lse);  // lse ~ 1..10
        check(memcmp(out[0], out[1], 4 * n * sizeof(real)) == 0 && memcmp(lse[0], lse[1], (size_t)B * H * S * sizeof(real)) == 0,
              "attention H %d S %d hd %d: 1 and 2 threads differ", H, S, hd);
        for (int t = 0; t < 2; t++) { free(out[t]); free(lse[t]); }
        free(in); free(want); free(w_lse); free(P);
    }
}

// ----------------------------------------------------------------------------
// determinism across thread counts

static void test_threads(void) {
    Config cfg = tiny_config(0);
    // S > 48 and B*S > 512: several attention blocks and LM-head chunks, as in real runs
    cfg.d = 32; cfg.F = 48; cfg.V = 64; cfg.max_seq_len = 80;
    int B = 8, S = 80, N = B * S;
    int *x = xmalloc(N * sizeof(int)), *y = xmalloc(N * sizeof(int));
    Rng rng;
    rng_seed(&rng, 77);
    random_tokens(x, N, cfg.V, &rng);
    random_tokens(y, N, cfg.V, &rng);
    real *grads[2] = {NULL, NULL};
    double loss[2];
    for (int run = 0; run < 2; run++) {
        set_threads(run + 1);
        Ouro m;
        if (!check(ouro_init(&m, &cfg, 6) == 0, "threads: init: %s", ouro_error)) break;
        scramble_params(&m, 8);
        ouro_zero_grad(&m);
        check(ouro_forward(&m, x, y, B, S, cfg.T, OURO_STAGE1) == 0 && ouro_backward(&m) == 0 &&
              m.metrics.loss_stage1 > 0, "threads: forward or backward failed: %s", ouro_error);
        loss[run] = m.metrics.loss_stage1;
        grads[run] = xmalloc(m.n_params * sizeof(real));
        memcpy(grads[run], m.grads_memory, m.n_params * sizeof(real));
        if (run == 1)
            check(memcmp(grads[0], grads[1], m.n_params * sizeof(real)) == 0 && loss[0] == loss[1],
                  "1 vs 2 threads: loss %.17g vs %.17g, or the gradients differ", loss[0], loss[1]);
        ouro_free(&m);
    }
    set_threads(max_threads());
    free(grads[0]); free(grads[1]); free(x); free(y);
}

// ----------------------------------------------------------------------------
// train.c

static const char *FIX_TOK = "ouro_test_tok.bin", *FIX_TRAIN = "ouro_test_train.bin",
                  *FIX_VAL = "ouro_test_val.bin", *FIX_CKPT = "ouro_test_run_ckpt.bin";

// A tokenizer and train/validation shards made from the built-in story generator.
static void make_train_fixture(void) {
    static int made;
    if (made) return;
    made = 1;
    enum { STORIES = 240, VAL = 24 };
    char *text = xmalloc(STORIES * 8192);
    size_t starts[STORIES + 1], len = 0;
    Rng rng;
    rng_seed(&rng, 99);
    for (int i = 0; i < STORIES; i++) {
        starts[i] = len;
        len += story_generate(&rng, text + len, 8192);
    }
    starts[STORIES] = len;
    Tokenizer tok;
    if (tokenizer_train(&tok, text, len, 320) || tokenizer_save(&tok, FIX_TOK)) die("fixture: %s", ouro_error);
    uint16_t *tokens = xmalloc((len + STORIES) * sizeof(uint16_t));
    size_t n = 0, n_train = 0;
    for (int i = 0; i < STORIES; i++) {
        if (i == STORIES - VAL) n_train = n;
        n += tokenizer_encode(&tok, text + starts[i], starts[i + 1] - starts[i], tokens + n);
        tokens[n++] = TOKEN_EOT;
    }
    if (shard_write(FIX_TRAIN, tokens, n_train, tok.vocab_size) ||
        shard_write(FIX_VAL, tokens + n_train, n - n_train, tok.vocab_size))
        die("fixture: %s", ouro_error);
    free(tokens);
    free(text);
    tokenizer_free(&tok);
}

static TrainOptions small_train_options(void) {
    TrainOptions o = options_default();
    o.train_path = FIX_TRAIN; o.val_path = FIX_VAL; o.tokenizer_path = FIX_TOK; o.ckpt_path = FIX_CKPT;
    o.model.d = 16; o.model.H = 2; o.model.F = 32; o.model.L = 1; o.model.T = 3;
    o.B = 2; o.S = 16; o.steps = 8; o.warmup = 2; o.eval_every = 4; o.eval_batches = 2;
    o.ckpt_every = 0; o.log_every = 1000; o.overwrite = 1; o.quiet = 1;
    return o;
}

// Runs a whole training invocation; fills *tr (caller frees). Returns 0 or -1.
static int run_training(Trainer *tr, const TrainOptions *o) {
    if (trainer_setup(tr, o)) return -1;
    return trainer_run(tr);
}

// The header lines and evaluation rows of a CSV log, in order (the training rows carry tok/s,
// which differs from run to run). Returns a fresh string, or NULL if the log cannot be read.
static char *log_header_and_evals(const char *path) {
    char *text, *save = NULL;
    size_t len;
    if (read_file(path, 1 << 20, &text, &len)) return NULL;
    char *out = xcalloc(len + 1, 1);
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        if (strncmp(line, "kind,", 5) == 0 || strncmp(line, "eval,", 5) == 0) strcat(strcat(out, line), "\n");
    free(text);
    return out;
}

// Stopping at step 4 and resuming gives the same losses and weights, to the bit, as one run, and
// the same log: one header, and the evaluation at step 4 (where the first half stopped) once.
static void test_resume_is_exact(void) {
    make_train_fixture();
    TrainOptions o = small_train_options();
    const char *log_whole = "ouro_test_resume_whole.csv", *log_split = "ouro_test_resume_split.csv";
    Trainer whole, first, rest;
    o.log_path = log_whole;
    if (!check(run_training(&whole, &o) == 0, "uninterrupted run: %s", ouro_error)) return;
    o.log_path = log_split;
    o.stop_at = 4;
    check(run_training(&first, &o) == 0, "first half: %s", ouro_error);
    trainer_free(&first);
    o.stop_at = 0; o.resume = 1; o.overwrite = 0;
    if (!check(run_training(&rest, &o) == 0, "resumed half: %s", ouro_error)) { trainer_free(&whole); return; }
    int same = rest.model.step == whole.model.step &&
               memcmp(rest.model.params_memory, whole.model.params_memory, whole.model.n_params * sizeof(real)) == 0;
    for (int s = 4; s < 8; s++) same &= rest.losses[s] == whole.losses[s] && whole.losses[s] > 0;
    check(same, "resume: losses of steps 5..8 or the final weights differ from the uninterrupted run "
          "(step 8 loss %.9g vs %.9g)", rest.losses[7], whole.losses[7]);
    char *evals_whole = log_header_and_evals(log_whole), *evals_split = log_header_and_evals(log_split);
    check(evals_whole && evals_split && strcmp(evals_whole, evals_split) == 0,
          "resume: the log's header and evaluations differ from the uninterrupted run's:\n%s---\n%s",
          evals_whole ? evals_whole : "(unreadable)", evals_split ? evals_split : "(unreadable)");
    free(evals_whole);
    free(evals_split);
    remove(log_whole);
    remove(log_split);
    trainer_free(&whole);
    trainer_free(&rest);
}

// Stage II moves the exit gate and nothing else.
static void test_stage2_trains_only_the_gate(void) {
    make_train_fixture();
    const char *stage1 = "ouro_test_stage1.bin";
    TrainOptions o = small_train_options();
    o.ckpt_path = stage1;
    o.steps = 4;
    Trainer tr;
    check(run_training(&tr, &o) == 0, "stage 1: %s", ouro_error);
    trainer_free(&tr);
    o.stage = 2; o.init_path = stage1; o.ckpt_path = FIX_CKPT; o.steps = 6; o.lr = 1e-2;
    if (!check(run_training(&tr, &o) == 0, "stage 2: %s", ouro_error)) return;
    Ouro before;
    if (check(ouro_load_checkpoint(&before, stage1, NULL, NULL) == 0, "reload stage 1: %s", ouro_error)) {
        for (int i = 0; i < N_PARAM_TENSORS; i++) {
            size_t bytes = before.param_sizes[i] * sizeof(real);
            if (bytes == 0) continue;
            int same = memcmp(param_tensor(before.params_memory, before.param_sizes, i),
                              param_tensor(tr.model.params_memory, tr.model.param_sizes, i), bytes) == 0;
            int gate = i == P_EXIT_W || i == P_EXIT_B;
            check(gate ? !same : same, "stage 2: %s %s", param_names[i], gate ? "did not change" : "changed");
        }
        ouro_free(&before);
    }
    trainer_free(&tr);
    remove(stage1);
}

static void test_export_round_trip(void) {
    make_train_fixture();
    const char *path = "ouro_test_export.bin";
    TrainOptions o = small_train_options();
    o.steps = 2;
    Trainer tr;
    if (!check(run_training(&tr, &o) == 0, "export fixture: %s", ouro_error)) return;
    check(export_model(&tr, path) == 0, "export: %s", ouro_error);
    char *file, *tok_file;
    size_t size, tok_size;
    ExportHeader hdr;
    if (check(read_file(path, 1 << 30, &file, &size) == 0 && read_file(FIX_TOK, 1 << 20, &tok_file, &tok_size) == 0,
              "re-read export: %s", ouro_error)) {
        check(export_check(file, size, path, &hdr) == 0, "export_check: %s", ouro_error);
        const float *w = (const float *)(file + hdr.header_bytes);
        int same = memcmp(&hdr.config, &tr.model.cfg, sizeof(Config)) == 0 && hdr.n_weights == tr.model.n_params;
        for (size_t i = 0; same && i < tr.model.n_params; i++) same &= w[i] == (float)tr.model.params_memory[i];
        check(same, "export: config or weights differ from the model");
        check(hdr.tokenizer_bytes == tok_size && memcmp(w + hdr.n_weights, tok_file, tok_size) == 0,
              "export: embedded tokenizer differs from %s", FIX_TOK);
        check(export_check(file, size - 1, path, &hdr) != 0 && strstr(ouro_error, "bytes"), "truncated export accepted");
        ExportHeader *h = (ExportHeader *)file;
        h->header_bytes = 128;
        check(export_check(file, size, path, &hdr) != 0 && strstr(ouro_error, "header_bytes"), "export with header_bytes 128 accepted");
        h->header_bytes = sizeof *h;
        h->reserved[0] = 7;
        check(export_check(file, size, path, &hdr) != 0 && strstr(ouro_error, "reserved"), "export with reserved bytes set accepted");
        h->reserved[0] = 0;
        float *weights = (float *)(file + sizeof *h), kept = weights[5];
        weights[5] = INFINITY;
        check(export_check(file, size, path, &hdr) != 0 && strstr(ouro_error, "weight 5 "), "export with an infinite weight accepted: %s", ouro_error);
        weights[5] = kept;
        check(export_check(file, size, path, &hdr) == 0, "the restored export is rejected: %s", ouro_error);
        file[0] = 'x';
        check(export_check(file, size, path, &hdr) != 0 && strstr(ouro_error, "magic"), "export with bad magic accepted");
        free(file);
        free(tok_file);
    }
    // a tokenizer file replaced during training (here by one trained on other text) is not
    // embedded: the export would decode to other text
    const char *other = "ouro_test_other_tok.bin";
    Tokenizer tok;
    const char *text = "a tokenizer trained on a different text, a different text entirely";
    if (check(tokenizer_train(&tok, text, strlen(text), 270) == 0 && tokenizer_save(&tok, other) == 0, "other tokenizer: %s", ouro_error)) {
        tokenizer_free(&tok);
        tr.opt.tokenizer_path = other;
        check(export_model(&tr, path) != 0 && strstr(ouro_error, "changed since training"),
              "export embedded a tokenizer other than the one trained with: '%s'", ouro_error);
        remove(other);
    }
    trainer_free(&tr);
    remove(path);
}

// Each bad input is refused with a message naming the problem; nothing is overwritten.
static void test_train_rejects_bad_input(void) {
    make_train_fixture();
    Trainer tr;
    TrainOptions o = small_train_options();
    o.train_path = "/tmp/ouro_no_such_shard.bin";
    check(trainer_setup(&tr, &o) != 0 && strstr(ouro_error, "ouro_no_such_shard"), "missing shard: '%s'", ouro_error);
    trainer_free(&tr);

    const char *bad = "ouro_test_bad_shard.bin";
    uint16_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = (uint16_t)i;
    shard_write(bad, ids, 40, 400);  // written by another tokenizer
    o = small_train_options();
    o.train_path = bad;
    check(trainer_setup(&tr, &o) != 0 && strstr(ouro_error, "vocabulary"), "vocabulary mismatch: '%s'", ouro_error);
    trainer_free(&tr);
    write_bytes(bad, "NOTASHARD-------------------------------", 40);
    check(trainer_setup(&tr, &o) != 0 && strstr(ouro_error, "ouro_test_bad_shard"), "corrupt shard: '%s'", ouro_error);
    trainer_free(&tr);
    remove(bad);

    char *argv[] = {"train", "-d", "12abc"};
    TrainOptions p = options_default();
    check(parse_args(3, argv, &p) != 0 && strstr(ouro_error, "-d"), "non-numeric flag accepted: '%s'", ouro_error);
    char *argv2[] = {"train", "--no-such-flag", "1"};
    check(parse_args(3, argv2, &p) != 0, "unknown flag accepted");
    struct { char *flags[4]; const char *error; } bad_args[] = {
        {{"train", "--plot", ""}, "empty value"},                    // would draw into /
        {{"train", "--init", "ck.bin"}, "--stage 2"},                 // was silently ignored
        {{"train", "--plot", "figs"}, "needs --log"},                 // failed only after training
    };
    for (int i = 0; i < 3; i++) {
        p = options_default();
        check(parse_args(3, bad_args[i].flags, &p) != 0 && strstr(ouro_error, bad_args[i].error),
              "train %s '%s': error '%s' should say '%s'", bad_args[i].flags[1], bad_args[i].flags[2], ouro_error, bad_args[i].error);
    }
    char *argv4[] = {"train", "--lr", "10.0001"};   // the message quotes the value, not a rounded %g
    p = options_default();
    check(parse_args(3, argv4, &p) != 0 && strstr(ouro_error, "10.0001 is out of range"), "--lr 10.0001: '%s'", ouro_error);
    char *argv3[] = {"train", "-B", "65536", "-S", "1024"};   // 2^26 tokens in one batch
    p = options_default();
    check(parse_args(5, argv3, &p) != 0 && strstr(ouro_error, "tokens per batch"), "B x S = 2^26 accepted: '%s'", ouro_error);

    // the evaluation windows of 2^20 batches of 4096 (2^32: past int) stay inside the shard
    Trainer big;
    memset(&big, 0, sizeof big);
    big.opt.B = 4096; big.opt.S = 1; big.opt.eval_batches = 1 << 20;
    big.n_val = 100;
    big.val_tokens = xmalloc(100 * sizeof(uint16_t));
    for (int i = 0; i < 100; i++) big.val_tokens[i] = (uint16_t)i;
    big.inputs = xmalloc(4096 * sizeof(int));
    big.targets = xmalloc(4096 * sizeof(int));
    int inside = 1;
    for (int batch = 0; batch < 1 << 20; batch += (1 << 20) - 1) {
        eval_batch(&big, batch);
        for (int b = 0; b < 4096; b++) inside &= big.inputs[b] >= 0 && big.targets[b] == big.inputs[b] + 1 && big.targets[b] < 100;
    }
    check(inside, "evaluation windows past 2^31 left the validation shard");
    free(big.val_tokens); free(big.inputs); free(big.targets);

    // a good checkpoint, then: a new run must not replace it; S beyond max_seq_len; a NaN weight
    o = small_train_options();
    o.steps = 2;
    check(run_training(&tr, &o) == 0, "checkpoint fixture: %s", ouro_error);
    trainer_free(&tr);
    char *saved;
    size_t saved_len;
    read_file(FIX_CKPT, 1 << 30, &saved, &saved_len);
    o.overwrite = 0;
    check(trainer_setup(&tr, &o) != 0 && strstr(ouro_error, "exists"), "a new run would overwrite a checkpoint: '%s'", ouro_error);
    trainer_free(&tr);
    o.resume = 1; o.S = 32; o.steps = 4;
    check(trainer_setup(&tr, &o) != 0 && strstr(ouro_error, "max_seq_len") && strstr(ouro_error, FIX_CKPT),
          "S > max_seq_len accepted, or the checkpoint not named: '%s'", ouro_error);
    trainer_free(&tr);
    o.S = 16;
    // a checkpoint past --steps, and one whose RNG state is 0 (xorshift would stay at 0)
    o.steps = 1;
    check(trainer_setup(&tr, &o) != 0 && strstr(ouro_error, "past --steps"), "resuming past --steps accepted: '%s'", ouro_error);
    trainer_free(&tr);
    o.steps = 4;
    CheckpointHeader zero_rng;
    memcpy(&zero_rng, saved, sizeof zero_rng);
    zero_rng.rng_state = 0;
    char *copy = xmalloc(saved_len);
    memcpy(copy, saved, saved_len);
    memcpy(copy, &zero_rng, sizeof zero_rng);
    write_bytes(FIX_CKPT, copy, saved_len);
    check(trainer_setup(&tr, &o) != 0 && strstr(ouro_error, "RNG state is 0"), "RNG state 0 accepted: '%s'", ouro_error);
    trainer_free(&tr);
    write_bytes(FIX_CKPT, saved, saved_len);
    free(copy);
    if (check(trainer_setup(&tr, &o) == 0, "resume for the NaN test: %s", ouro_error)) {
        tr.model.params.wv[3] = NAN;
        check(trainer_run(&tr) != 0 && strstr(ouro_error, "wv") && strstr(ouro_error, "step 3"),
              "NaN weight: error '%s' should name wv and step 3", ouro_error);
        char *after;
        size_t after_len;
        read_file(FIX_CKPT, 1 << 30, &after, &after_len);
        check(after_len == saved_len && memcmp(after, saved, saved_len) == 0, "a failed run changed the checkpoint");
        free(after);
    }
    trainer_free(&tr);
    free(saved);
}

// The state dump has the documented layout and the numbers of one forward/backward, as a second
// trainer set up the same way computes them itself (same seed: the same weights and batch). It
// writes no checkpoint, so an existing --ckpt neither stops it nor is touched.
static void test_dump_state(void) {
    make_train_fixture();
    const char *path = "ouro_test_dump.bin", *ckpt = "ouro_test_dump_ckpt.bin";
    FILE *f = fopen(ckpt, "wb");
    if (!check(f && fputs("not a checkpoint", f) >= 0 && fclose(f) == 0, "cannot write %s", ckpt)) return;
    TrainOptions o = small_train_options();
    o.ckpt_path = ckpt; o.overwrite = 0; o.dump_path = path;
    Trainer tr;
    if (!check(trainer_setup(&tr, &o) == 0, "dump setup with an existing --ckpt: %s", ouro_error)) return;
    check(dump_state(&tr, path) == 0, "dump: %s", ouro_error);
    char *buf = NULL;
    size_t len = 0;
    if (check(read_file(path, 1 << 30, &buf, &len) == 0, "re-read dump: %s", ouro_error)) {
        const Ouro *m = &tr.model;
        size_t N = (size_t)o.B * o.S, T = m->cfg.T;
        size_t expect = 128 + 2 * N * 4 + 3 * T * N * 4 + 2 * m->n_params * 4;
        DumpHeader h;
        memcpy(&h, buf, sizeof h);
        check(len == expect && memcmp(h.magic, "OURODUMP", 8) == 0 && h.B == o.B && h.S == o.S &&
              h.n_params == m->n_params && h.loss == m->metrics.loss_stage1,
              "dump: %zu bytes (expected %zu) or a header field is wrong", len, expect);
        Trainer ref;   // the reference: its own batch, forward and backward
        if (check(trainer_setup(&ref, &o) == 0, "dump reference setup: %s", ouro_error)) {
            Ouro *r = &ref.model;
            next_batch(&ref);
            ouro_zero_grad(r);
            check(ouro_forward(r, ref.inputs, ref.targets, o.B, o.S, (int)T, OURO_STAGE1) == 0 && ouro_backward(r) == 0,
                  "dump reference forward/backward: %s", ouro_error);
            const int32_t *inputs = (const int32_t *)(buf + 128), *targets = inputs + N;
            const float *ce = (const float *)(targets + N), *z = ce + T * N, *p = z + T * N;
            const float *params = p + T * N, *grads = params + m->n_params;
            int batch = 1, per_step = 1, weights = 1;
            for (size_t i = 0; i < N; i++) batch &= inputs[i] == ref.inputs[i] && targets[i] == ref.targets[i];
            for (size_t i = 0; i < T * N; i++)
                per_step &= ce[i] == (float)r->acts->ce[i] && z[i] == (float)r->acts->z[i] && p[i] == (float)r->acts->p[i];
            for (size_t i = 0; i < m->n_params; i++)
                weights &= params[i] == (float)r->params_memory[i] && grads[i] == (float)r->grads_memory[i];
            check(batch && per_step && weights && h.loss == r->metrics.loss_stage1,
                  "dump differs from a reference forward/backward: batch %d, ce/z/p %d, params/grads %d, loss %.9g vs %.9g",
                  batch, per_step, weights, h.loss, r->metrics.loss_stage1);
            trainer_free(&ref);
        }
        free(buf);
    }
    buf = NULL;
    check(read_file(ckpt, 1 << 10, &buf, &len) == 0 && strcmp(buf, "not a checkpoint") == 0,
          "dump: the existing --ckpt %s was changed", ckpt);
    free(buf);
    trainer_free(&tr);
    remove(path);
    remove(ckpt);
}

// Charts of awkward data still come out as finite SVG, and quickly: values a few ulps apart (whose
// tick step once failed to advance x: an endless loop and a file without bound), a NaN or huge
// coordinate, all-equal huge values, a negative bar.
static void test_plot_edge_cases(void) {
    const char *path = "ouro_test_edge.svg";
    double x2[2] = {1, 2}, close[2] = {1e10, 1e10 + 2e-6}, nan_x[3] = {1, NAN, 3}, y3[3] = {1, 2, 3};
    double huge[2] = {1e17, 1e17}, inf_y[3] = {1, 1e308, -1e308}, bars_x[3] = {1, 2, 3}, bars_y[3] = {0.5, -0.2, 0.7};
    struct { const double *x, *y; int n, bars; const char *what; } cases[] = {
        {x2, close, 2, 0, "values a few ulps apart"}, {nan_x, y3, 3, 0, "a NaN x"}, {x2, huge, 2, 0, "all-equal 1e17"},
        {y3, inf_y, 3, 0, "+-1e308"}, {bars_x, bars_y, 3, 1, "a negative bar"},
    };
    for (int i = 0; i < 5; i++) {
        Plot p = {.title = "edge", .xlabel = "x", .ylabel = "y", .bars = cases[i].bars};
        plot_add(&p, "series", cases[i].x, cases[i].y, cases[i].n, 0, 1);
        char *svg = NULL;
        size_t len = 0;
        int ok = plot_write_svg(&p, path) == 0 && read_file(path, 1 << 20, &svg, &len) == 0;
        check(ok && strstr(svg, "</svg>") && !strstr(svg, "nan") && !strstr(svg, "inf") && !strstr(svg, "height=\"-"),
              "chart of %s: %s", cases[i].what, ok ? "NaN, inf or a negative height in the SVG" : ouro_error);
        free(svg);
    }
    remove(path);
}

static void test_plots(void) {
    make_train_fixture();
    const char *log = "ouro_test_log.csv", *dir = "ouro_test_plots";
    TrainOptions o = small_train_options();
    o.log_path = log;
    o.log_every = 2;
    Trainer tr;
    check(run_training(&tr, &o) == 0, "training for the log: %s", ouro_error);
    trainer_free(&tr);
    // Stage II from that checkpoint appends to the same log: the figures draw both stages
    TrainOptions o2 = o;
    o2.stage = 2; o2.init_path = FIX_CKPT; o2.ckpt_path = "ouro_test_stage2_log.bin"; o2.steps = 4;
    check(run_training(&tr, &o2) == 0, "stage 2 for the log: %s", ouro_error);
    trainer_free(&tr);
    remove(o2.ckpt_path);
    char *text = NULL;
    size_t text_len;
    if (check(read_file(log, 1 << 24, &text, &text_len) == 0, "read the log: %s", ouro_error)) {
        check(strstr(text, "\ntrain,1,") && strstr(text, "\neval,1,") && strstr(text, "\ntrain,2,") &&
              strstr(text, "\neval,2,"), "the log lost a stage's rows after Stage II: it should hold both");
        free(text);
    }
    check(write_plots(log, dir) == 0, "plots: %s", ouro_error);
    // logs that train did not write are rejected with a message, not read at column -1
    struct { const char *text, *error; } bad_logs[] = {
        {"kind,step,,loss\ntrain,1,2,3\n", "column 3 of the header has no name"},
        {"kind,step,loss,p1\neval,1,2,0.5\n", "no column \"stage\""},
        {"step,kind\n1,train\n", "first column"},
    };
    for (int i = 0; i < 3; i++) {
        write_bytes("ouro_test_bad_log.csv", bad_logs[i].text, strlen(bad_logs[i].text));
        check(write_plots("ouro_test_bad_log.csv", dir) != 0 && strstr(ouro_error, bad_logs[i].error),
              "bad log %d: error '%s' should say '%s'", i, ouro_error, bad_logs[i].error);
    }
    // a log cut off mid-row (or with stray lines) still draws: such lines are counted and skipped,
    // and a row with an empty stage cell is never taken for a stage
    char *good = NULL;
    size_t good_len = 0;
    if (check(read_file(log, 1 << 24, &good, &good_len) == 0, "re-read the log: %s", ouro_error)) {
        char *eval_row = strstr(good, "\neval,1,");
        size_t row_len = eval_row ? strcspn(eval_row + 1, "\n") : 0;
        char *damaged = xcalloc(2 * good_len + 64, 1);
        memcpy(damaged, good, good_len);
        strcat(damaged, "e\neval,1\neval,");                        // two stray lines
        if (eval_row) strncat(damaged, eval_row + 1 + 6, row_len - 6);  // the eval row, stage cell empty
        strcat(damaged, "\n");
        write_bytes("ouro_test_bad_log.csv", damaged, strlen(damaged));
        Table t;
        if (check(eval_row && table_read(&t, "ouro_test_bad_log.csv") == 0, "damaged log: %s", ouro_error)) {
            int stage_col = table_col(&t, "stage");
            check(t.skipped == 2 && stage_col > 0 && isnan(t.values[(size_t)(t.n_rows - 1) * t.n_cols + stage_col]),
                  "damaged log: %d lines skipped (expected 2), or the last row's stage is not empty", t.skipped);
            table_free(&t);
        }
        check(write_plots("ouro_test_bad_log.csv", dir) == 0, "damaged log: plots: %s", ouro_error);
        free(damaged);
        free(good);
    }
    remove("ouro_test_bad_log.csv");
    const char *names[] = {"loss", "ce_by_step", "exit_distribution", "qexit_tradeoff"};
    for (int i = 0; i < 4; i++) {
        char path[256], *svg = NULL;
        size_t len;
        snprintf(path, sizeof path, "%s/%s.svg", dir, names[i]);
        int ok = read_file(path, 1 << 24, &svg, &len) == 0;
        check(ok && strstr(svg, "<svg") && strstr(svg, "</svg>") && (strstr(svg, "<polyline") || strstr(svg, "<rect x")),
              "%s is not a complete SVG with data", path);
        if (ok && i == 0) check(strstr(svg, "Training loss (Stage I)") != NULL, "loss.svg should draw Stage I's loss alone");
        if (ok) free(svg);
    }
}

// ----------------------------------------------------------------------------

#include "tinystories/test_data.c"
#include "tinystories/test_storygen.c"
#ifndef OURO_DOUBLE
#include "test_run.c"  // run.c is float-only: it memory-maps float32 weights
#endif

int main(void) {
    enter_scratch_dir();
    int threads = max_threads();
    test_fast_exp();
    test_xmalloc_huge();
    test_matmul();
    test_attention();
    test_gradients();
    test_backward_needs_a_training_forward();
    test_optimizer_clip_rope();
    test_lr_schedule();
    test_stage2_loss_value();
    test_next_batch();
    test_exit_distribution();
    test_entropy_term();
    test_metrics_and_qexit();
    test_overfit();
    test_checkpoint();
    test_threads();
    set_threads(threads);
    run_data_tests();
    run_storygen_tests();
    test_resume_is_exact();
    test_stage2_trains_only_the_gate();
    test_export_round_trip();
    test_train_rejects_bad_input();
    test_dump_state();
    test_plot_edge_cases();
    test_plots();
#ifndef OURO_DOUBLE
    run_run_tests();
#endif
    leave_scratch_dir();
    printf("%d passed, %d failed, %d skipped\n", tests_passed, tests_failed, tests_skipped);
    return tests_failed ? 1 : 0;
}
