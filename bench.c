// bench.c: how fast ouro.c trains and run.c decodes on this machine (`make bench`).
//
// Prints one table for two model configs (tiny and medium, below) with 1 and 2 threads:
//   training   tokens/s and GFLOP/s of a whole Stage I step (zero grad, forward, backward, gradient
//              clipping, AdamW), and that rate as a % of this machine's FMA peak
//   decoding   tokens/s of run.c's one-token path at full depth T and with Q-exit (and the
//              average depth Q-exit ran), with GFLOP/s and % of peak
//   memory     peak RSS of the process and ouro.c's activation bytes per training token
// then the GFLOP/s of every matmul shape the two configs use, of their attention as a whole (and
// of two larger reference shapes),
// the FMA peak itself, the matmul micro-kernel alone, and decoding's bytes/s against a plain read.
// Every time is the median of several runs (the FMA peak, the micro-kernel and the plain read: the
// best of several, since each is a maximum), and a training, decoding, shape or attention figure
// is taken again when a short probe finds that another process held a core (measure_again).
// The FMA peak is measured with 1 and with 2 threads; "%peak" divides by the peak of the same
// thread count, never less than threads x the one-thread peak (the cores are identical, so a
// lower two-thread figure only means that another process held a core during the probe).
//
// FLOPs are counted honestly: only the useful multiply-adds of the matrix products, 2 per
// multiply-add, nothing for work done twice (attention's score recompute in the backward) and
// nothing for the elementwise work (norms, RoPE, softmax, SwiGLU, the exit gate, AdamW: O(d)
// per token against O(d^2)). Per token and recurrent step, forward:
//   layers     L * 2 * (4 d^2 + 3 d F)      q, k, v, o projections and the three SwiGLU matrices
//   attention  L * 2 * 2 * d * (S + 1) / 2  q k^T and P v over the causal keys: position i reads
//                                           i + 1 keys, (S + 1) / 2 on average (the masked half
//                                           is not useful work and is not counted)
//   LM head    2 * V * d
// A training step is 3 x forward (the backward computes dX and dW for every product: 2 x) for
// each of the T steps and B*S tokens. Decoding one token that runs n steps costs
// n * (layers + attention at its position) + 2 V d (the head, once, at the exit step).
//
// The machine is shared: the load average is printed before and after (the 1-minute average,
// which also counts a run that just ended), and a busy machine makes every figure lower and
// noisier, the two-thread ones most (a thread that waits for a descheduled one spins).
#define TESTING              // leaves out run.c's main()
#include "run.c"             // run.c includes ouro.c
#include <sys/resource.h>

#define REPEATS 3            // timed runs per training and decoding figure (median; shapes take 5)

// ----------------------------------------------------------------------------
// small helpers

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *x, int n) {
    qsort(x, n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

// Peak resident memory of the process so far, in MiB (Linux reports ru_maxrss in KiB).
static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

static double load_average(void) {
    double l[1] = {0};
    return getloadavg(l, 1) == 1 ? l[0] : -1;
}

// ----------------------------------------------------------------------------
// the FMA peak: independent chains of a*x+b, the best the cores can do with plain C
//
// Zen 3 (and most x86 cores since Haswell) has 2 FMA pipes with a 4-cycle latency, so at least
// 8 independent FMA chains are needed to keep both busy; 12 chains of 8 floats use 12 ymm
// registers, and gcc turns each step into a vfmadd. FLOPs: 12 chains * 8 lanes * 2 per step.

#define PEAK_CHAINS 12
#define PEAK_LANES 8

static volatile float peak_multiplier = 0.999999f;  // volatile: a run-time value, nothing folds

static float fma_chains(long steps) {
    float a = peak_multiplier, acc[PEAK_CHAINS][PEAK_LANES];
    for (int c = 0; c < PEAK_CHAINS; c++)
        for (int l = 0; l < PEAK_LANES; l++) acc[c][l] = 1.0f + 0.001f * (c * PEAK_LANES + l);
    for (long s = 0; s < steps; s++)
        for (int c = 0; c < PEAK_CHAINS; c++)
            for (int l = 0; l < PEAK_LANES; l++) acc[c][l] = acc[c][l] * a + 1e-7f;
    float sum = 0;
    for (int c = 0; c < PEAK_CHAINS; c++)
        for (int l = 0; l < PEAK_LANES; l++) sum += acc[c][l];
    return sum;
}

// GFLOP/s with `threads` threads each running `steps` steps of the chains: the best of `trials`.
static double fma_rate(int threads, long steps, int trials) {
    double best = 0;
    volatile float sink = 0;
    for (int trial = 0; trial < trials; trial++) {
        double t0 = now();
        #pragma omp parallel num_threads(threads)
        {
            float s = fma_chains(steps);
            #pragma omp atomic
            sink += s;
        }
        double gflops = 2.0 * PEAK_CHAINS * PEAK_LANES * steps * threads / (now() - t0) * 1e-9;
        if (gflops > best) best = gflops;
    }
    return best;
}

// The peak: the best of 5 trials of ~60 ms.
static double fma_peak(int threads) { return fma_rate(threads, 30000000L, 5); }

// A figure measures ouro.c only if the cores were ours while it was taken. On a shared machine
// they sometimes are not: this one (a VM) has phases of a second or more in which two threads run
// at one thread's speed, with no steal time reported (see the README). So each figure is
// bracketed by a short probe (~10 ms of the FMA chains on as many threads); when either probe runs
// below 3/4 of threads x the one-thread peak, the figure is measured again after a pause, up to
// ATTEMPTS times in all, and printed with a '*' if no attempt was clean. Use:
//     Attempt a = {.threads = n};  while (measure_again(&a)) x = measure(..., n);
#define ATTEMPTS 3

typedef struct {
    int threads;
    int tries;    // measurements so far
    int clean;    // the last one had free cores before and after it
    int before;   // the probe before the current measurement found them free
} Attempt;

static double one_thread_peak;  // set by main, before any figure

// The best of two trials of ~5 ms: the first one after a pause runs slower while the core wakes up.
static int cores_free(int threads) {
    return fma_rate(threads, 2500000L, 2) >= 0.75 * threads * one_thread_peak;
}

static int measure_again(Attempt *a) {
    if (a->tries > 0) {
        a->clean = a->before && cores_free(a->threads);
        if (a->clean || a->tries == ATTEMPTS) return 0;
        struct timespec pause = {1, 0};
        nanosleep(&pause, NULL);
    }
    a->before = cores_free(a->threads);
    a->tries++;
    return 1;
}

static const char *mark(const Attempt *a) { return a->clean ? " " : "*"; }

// ouro.c's micro-kernel on packed slivers, as macro_kernel calls it (strides 1 and MR are
// constants there). Not inlined into the timing loop: there gcc would optimise it differently.
__attribute__((noinline))
static void packed_micro_kernel(int kc, const real *a, const real *b, real *C, int ldc, int add) {
    micro_kernel(kc, a, 1, MR, b, C, ldc, add);
}

// The ceiling of every matmul below: ouro.c's micro-kernel alone, on one packed A sliver
// (MR x KC) and one packed B sliver (KC x NR) that stay in L1, accumulating into one C tile.
// A matmul reaches this rate minus its packing and the time its operands take to arrive from
// L2, L3 and memory. Best of 5 trials of ~35 ms, one thread.
static double micro_kernel_rate(void) {
    static real a[MR * KC], b[KC * NR], c[MR * NR];
    for (int i = 0; i < MR * KC; i++) a[i] = 1e-3f * (i % 7);
    for (int i = 0; i < KC * NR; i++) b[i] = 1e-3f * (i % 5);
    memset(c, 0, sizeof c);
    const int calls = 60000;
    void (*volatile kernel)(int, const real *, const real *, real *, int, int) = packed_micro_kernel;
    double best = 0;
    for (int trial = 0; trial < 5; trial++) {
        double t0 = now();
        for (int i = 0; i < calls; i++) kernel(KC, a, b, c, NR, 1);
        double gflops = 2.0 * MR * NR * KC * calls / (now() - t0) * 1e-9;
        if (gflops > best) best = gflops;
    }
    volatile real sink = c[0];
    (void)sink;
    return best;
}

// Read bandwidth (GB/s) over a buffer of `bytes` bytes, read again and again (the access
// pattern of decoding: every weight once per token), summed in 32 lanes: 4 vector add chains,
// so the adds keep up with the loads. Best of 5 trials.
static double read_bandwidth(size_t bytes) {
    size_t n = bytes / sizeof(float);
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = 1e-3f * (i % 11);
    int passes = (int)(2e9 / bytes) + 1;
    double best = 0;
    volatile float sink = 0;
    for (int trial = 0; trial < 5; trial++) {
        float part[32] = {0};
        double t0 = now();
        for (int p = 0; p < passes; p++)
            for (size_t i = 0; i + 32 <= n; i += 32)
                for (int u = 0; u < 32; u++) part[u] += x[i + u];
        double gbs = (double)passes * n * sizeof(float) / (now() - t0) * 1e-9;
        if (gbs > best) best = gbs;
        for (int u = 0; u < 32; u++) sink += part[u];
    }
    (void)sink;  // written, so the sums are computed; never read
    free(x);
    return best;
}

// Bytes decoding at full depth touches: every weight matrix and the full-context KV caches.
static size_t decode_working_set(const Config *c, double *weights, double *kv) {
    *weights = sizeof(float) * ((double)c->L * (4.0 * c->d * c->d + 3.0 * c->d * c->F) + (double)c->V * c->d);
    *kv = sizeof(float) * 2.0 * c->T * c->L * c->max_seq_len * c->d;
    return (size_t)(*weights + *kv);
}

// ----------------------------------------------------------------------------
// the two configs and their FLOPs

typedef struct {
    const char *name;
    Config cfg;   // max_seq_len = S
    int B, S;
} BenchConfig;

static BenchConfig bench_config(const char *name, int d, int H, int F, int V) {
    BenchConfig b = {.name = name, .B = 8, .S = 256,
                     .cfg = {.V = V, .d = d, .H = H, .F = F, .L = 2, .T = 4, .max_seq_len = 256, .tied = 0,
                             .rope_theta = 10000.0f, .norm_eps = 1e-6f}};
    return b;
}

// Forward FLOPs of one token at one recurrent step, without the LM head (see the top comment);
// keys: the number of keys the token attends to.
static double layer_step_flops(const Config *c, double keys) {
    double d = c->d, F = c->F;
    return c->L * (2 * (4 * d * d + 3 * d * F) + 2 * 2 * d * keys);
}

// Useful FLOPs of one Stage I training step on B sequences of S tokens.
static double train_step_flops(const BenchConfig *b) {
    const Config *c = &b->cfg;
    double per_token = c->T * (layer_step_flops(c, (b->S + 1) / 2.0) + 2.0 * c->V * c->d);
    return 3 * per_token * b->B * b->S;
}

// ----------------------------------------------------------------------------
// training

typedef struct {
    double tok_per_s, gflops;
    double decode_tok_per_s[2], decode_gflops[2];  // [0] full depth, [1] Q-exit
    double decode_gbs;                              // GB/s of weights and KV read at full depth
    double qexit_depth;
    double rss_mib, act_bytes_per_token;
} BenchResult;

static void random_tokens(int *x, size_t n, int V, Rng *rng) {
    for (size_t i = 0; i < n; i++) x[i] = (int)rng_below(rng, (uint64_t)V);
}

// Median seconds of one whole training step (one untimed warm-up step first: it allocates).
static double time_train_step(const BenchConfig *b) {
    Ouro m;
    if (ouro_init(&m, &b->cfg, 1)) die("bench %s: %s", b->name, ouro_error);
    size_t N = (size_t)b->B * b->S;
    int *x = xmalloc(N * sizeof(int)), *y = xmalloc(N * sizeof(int));
    Rng rng;
    rng_seed(&rng, 2);
    double seconds[REPEATS];
    for (int r = -1; r < REPEATS; r++) {
        random_tokens(x, N, b->cfg.V, &rng);
        random_tokens(y, N, b->cfg.V, &rng);
        double t0 = now();
        ouro_zero_grad(&m);
        if (ouro_forward(&m, x, y, b->B, b->S, b->cfg.T, OURO_STAGE1) || ouro_backward(&m))
            die("bench %s: %s", b->name, ouro_error);
        ouro_clip_grad(&m, 1.0);
        ouro_adamw(&m, 1e-3, 0.1);
        if (r >= 0) seconds[r] = now() - t0;
    }
    free(x);
    free(y);
    ouro_free(&m);
    return median(seconds, REPEATS);
}

// ----------------------------------------------------------------------------
// decoding with run.c
//
// A random model is exported to /tmp and loaded with run.c's model_load (its matrices repacked),
// then max_seq_len tokens are decoded one at a time from position 0 with full KV caches. The
// export carries no tokenizer: decoding speed does not involve it, and run.c requires an
// embedded tokenizer's vocabulary to equal V, which a BPE trained on a small text cannot reach
// for V = 4096 (training stops when no pair occurs twice).
// The exit gate gets random weights (w ~ N(0, 1/d), b = 0) so that z = h . w is ~N(0, 1) over
// tokens and Q-exit stops different tokens at different depths, as a trained gate does.

static const char *BENCH_MODEL_PATH = "/tmp/ouro_bench_model.bin";
static const double BENCH_Q = 0.5;

static void export_bench_model(const BenchConfig *b) {
    Ouro net;
    if (ouro_init(&net, &b->cfg, 3)) die("bench %s: %s", b->name, ouro_error);
    Rng rng;
    rng_seed(&rng, 4);
    for (int j = 0; j < b->cfg.d; j++) net.params.exit_w[j] = (real)(rng_normal(&rng) / sqrt((double)b->cfg.d));
    if (ouro_export(&net, BENCH_MODEL_PATH, NULL, 0)) die("bench export: %s", ouro_error);
    ouro_free(&net);
}

// Bytes one token reads when it runs n_steps steps at position pos (counting from 0): every
// layer weight matrix once per step, its keys and values (pos + 1 of each, per step and layer),
// and the LM head once. This is the memory traffic that bounds decoding.
static double decode_bytes(const Config *c, int n_steps, int pos) {
    double d = c->d, F = c->F;
    return sizeof(float) * (n_steps * c->L * (4 * d * d + 3 * d * F + 2.0 * d * (pos + 1)) + (double)c->V * d);
}

// Median tokens/s of decoding max_seq_len tokens under pol; *depth gets the mean steps per token,
// *flops the useful FLOPs and *bytes the bytes read (decode_bytes) of one such pass.
static double time_decode(const ExitPolicy *pol, double *depth, double *flops, double *bytes) {
    Model m;
    if (model_load(&m, BENCH_MODEL_PATH)) die("bench decode: %s", ouro_error);
    const Config *c = &m.cfg;
    int n = c->max_seq_len;
    int *tokens = xmalloc(n * sizeof(int));
    Rng rng;
    rng_seed(&rng, 5);
    random_tokens(tokens, n, c->V, &rng);
    double tok_per_s[REPEATS];
    for (int r = 0; r < REPEATS; r++) {
        RunState s;
        if (runstate_init(&s, &m, KV_FULL, c->T, 0, c->max_seq_len, 0)) die("bench decode: %s", ouro_error);
        double useful = 0, read = 0, t0 = now();
        for (int pos = 0; pos < n; pos++) {
            TokenTrace tr;
            int steps = decode_token(&m, &s, pol, tokens[pos], pos, &tr);
            if (steps < 0) die("bench decode: %s", ouro_error);
            useful += steps * layer_step_flops(c, pos + 1) + 2.0 * c->V * c->d;
            read += decode_bytes(c, steps, pos);
        }
        tok_per_s[r] = n / (now() - t0);
        *depth = (double)s.layer_steps / ((double)s.tokens * c->L);
        *flops = useful;
        *bytes = read;
        runstate_free(&s);
    }
    free(tokens);
    model_free(&m);
    return median(tok_per_s, REPEATS);
}

static BenchResult bench_run(const BenchConfig *b, int threads) {
    BenchResult r;
    memset(&r, 0, sizeof r);
    set_threads(threads);
    double step = time_train_step(b);
    r.tok_per_s = b->B * b->S / step;
    r.gflops = train_step_flops(b) / step * 1e-9;
    ExitPolicy full = {.kind = EXIT_STATIC, .n = b->cfg.T}, qexit = {.kind = EXIT_Q, .q = BENCH_Q};
    const ExitPolicy *pols[2] = {&full, &qexit};
    for (int i = 0; i < 2; i++) {
        double depth, flops, bytes;
        r.decode_tok_per_s[i] = time_decode(pols[i], &depth, &flops, &bytes);
        r.decode_gflops[i] = flops / b->cfg.max_seq_len * r.decode_tok_per_s[i] * 1e-9;
        if (i == 0) r.decode_gbs = bytes / b->cfg.max_seq_len * r.decode_tok_per_s[i] * 1e-9;
        if (i == 1) r.qexit_depth = depth;
    }
    r.rss_mib = peak_rss_mib();
    r.act_bytes_per_token = acts_bytes_per_token(&b->cfg, b->B, b->S);
    return r;
}

// ----------------------------------------------------------------------------
// matmul shapes
//
// Every product of a training step outside attention, with the arguments the model passes to
// matmul (C = op(A) op(B), op = transpose when the flag is 1). N = B*S tokens; the LM head goes
// in chunks of HEAD_ROWS tokens, as ouro.c does. Attention's products (per head, on packed
// operands, interleaved with the softmax) are timed as a whole: time_attention.

typedef struct {
    const char *what;
    int M, N, K, transA, transB;
} Shape;

static int model_shapes(const BenchConfig *b, Shape *s) {
    const Config *c = &b->cfg;
    int N = b->B * b->S, d = c->d, F = c->F, V = c->V, n = 0;
    int R = N < HEAD_ROWS ? N : HEAD_ROWS;
    s[n++] = (Shape){"q,k,v,o forward  x w^T", N, d, d, 0, 1};
    s[n++] = (Shape){"q,k,v,o dX       dy w", N, d, d, 0, 0};
    s[n++] = (Shape){"q,k,v,o dW       dy^T x", d, d, N, 1, 0};
    s[n++] = (Shape){"gate,up forward  x w^T", N, F, d, 0, 1};
    s[n++] = (Shape){"gate,up dX       dy w", N, d, F, 0, 0};
    s[n++] = (Shape){"gate,up dW       dy^T x", F, d, N, 1, 0};
    s[n++] = (Shape){"down forward     x w^T", N, d, F, 0, 1};
    s[n++] = (Shape){"down dX          dy w", N, F, d, 0, 0};
    s[n++] = (Shape){"down dW          dy^T x", d, F, N, 1, 0};
    s[n++] = (Shape){"LM head forward  h w^T", R, V, d, 0, 1};
    s[n++] = (Shape){"LM head dX       dy w", R, d, V, 0, 0};
    s[n++] = (Shape){"LM head dW       dy^T h", V, d, R, 1, 0};
    return n;
}

// The reference shapes of issue 7: 4096 tokens, d = 256, a d -> 3d projection and a V = 4096
// LM head, each as forward, dX and dW.
static int reference_shapes(Shape *s) {
    int N = 4096, d = 256, n = 0;
    s[n++] = (Shape){"d->3d forward    x w^T", N, 3 * d, d, 0, 1};
    s[n++] = (Shape){"d->3d dX         dy w", N, d, 3 * d, 0, 0};
    s[n++] = (Shape){"d->3d dW         dy^T x", 3 * d, d, N, 1, 0};
    s[n++] = (Shape){"V=4096 forward   h w^T", N, 4096, d, 0, 1};
    s[n++] = (Shape){"V=4096 dX        dy w", N, d, 4096, 0, 0};
    s[n++] = (Shape){"V=4096 dW        dy^T h", 4096, d, N, 1, 0};
    return n;
}

// The operands of one shape: A and B with random values, stored row-major with leading dimensions
// shape_lda and shape_ldb (a stored row's length), and C. Each lives where the model keeps it: an
// activation (A; B of a dW product, which has transA; C of the others) in 2 MiB pages, as in
// ouro.c's activation block (xmalloc_huge: one under 1 MiB, like the LM head's chunk of h, gets
// malloc's pages); a weight or weight gradient in ordinary pages.
static real *shape_output(const Shape *sh) {
    size_t nc = (size_t)sh->M * sh->N;
    return sh->transA ? xmalloc(nc * sizeof(real)) : xmalloc_huge(nc * sizeof(real));
}

static void shape_operands(const Shape *sh, real **A, real **B, real **C) {
    size_t na = (size_t)sh->M * sh->K, nb = (size_t)sh->K * sh->N;
    *A = xmalloc_huge(na * sizeof(real));
    *B = sh->transA ? xmalloc_huge(nb * sizeof(real)) : xmalloc(nb * sizeof(real));
    *C = shape_output(sh);
    Rng rng;
    rng_seed(&rng, 6);
    for (size_t i = 0; i < na; i++) (*A)[i] = (real)rng_normal(&rng);
    for (size_t i = 0; i < nb; i++) (*B)[i] = (real)rng_normal(&rng);
}

static int shape_lda(const Shape *sh) { return sh->transA ? sh->M : sh->K; }
static int shape_ldb(const Shape *sh) { return sh->transB ? sh->K : sh->N; }

// Median GFLOP/s of one matmul of this shape.
static double time_shape(const Shape *sh, int threads) {
    real *A, *B, *C;
    shape_operands(sh, &A, &B, &C);
    set_threads(threads);
    double flops = 2.0 * sh->M * sh->N * sh->K;
    int calls = (int)(2e8 / flops) + 1;  // at least ~0.2 GFLOP per timing: small shapes not all overhead
    double gflops[5];
    for (int r = -1; r < 5; r++) {
        double t0 = now();
        for (int i = 0; i < calls; i++)
            matmul(C, sh->N, A, shape_lda(sh), sh->transA, B, shape_ldb(sh), sh->transB, sh->M, sh->N, sh->K, 0);
        if (r >= 0) gflops[r] = flops * calls / (now() - t0) * 1e-9;
    }
    free(A); free(B); free(C);
    return median(gflops, 5);
}

// Median GFLOP/s of one layer's attention, forward and backward, over the config's B x H heads.
// Useful FLOPs only, as in the step (the top comment): 3 x B*S * 2 * 2 * d * (S + 1) / 2.
static double time_attention(const BenchConfig *b, int threads) {
    int B = b->B, S = b->S, d = b->cfg.d, H = b->cfg.H;
    size_t n = (size_t)B * S * d;
    // activations, as in ouro.c's activation block: in 2 MiB pages (lse, and scratch under 1 MiB,
    // in malloc's: see xmalloc_huge)
    real *x = xmalloc_huge(7 * n * sizeof(real)), *q = x, *k = q + n, *v = k + n, *y = v + n;
    real *dq = y + n, *dk = dq + n, *dv = dk + n;
    real *lse = xmalloc((size_t)B * H * S * sizeof(real));
    real *scratch = xmalloc_huge((size_t)threads * 2 * S * S * sizeof(real));
    Rng rng;
    rng_seed(&rng, 7);
    for (size_t i = 0; i < 3 * n; i++) x[i] = (real)rng_normal(&rng);
    set_threads(threads);
    double flops = 3.0 * B * S * 2 * 2 * d * (S + 1) / 2.0, gflops[5];
    for (int r = -1; r < 5; r++) {
        double t0 = now();
        attention_forward(y, lse, scratch, q, k, v, B, S, d, H, threads);
        attention_backward(dq, dk, dv, scratch, y, q, k, v, lse, B, S, d, H, threads);  // dy = y
        if (r >= 0) gflops[r] = flops / (now() - t0) * 1e-9;
    }
    free(x); free(lse); free(scratch);
    return median(gflops, 5);
}

// The GFLOP/s columns of one row of the shapes table: for 1 thread and up to max_thr, the rate
// (each figure re-measured while a probe finds a core busy, see measure_again) and its % of peak.
static double shape_rate(const void *shape, int threads) { return time_shape(shape, threads); }
static double attention_rate(const void *config, int threads) { return time_attention(config, threads); }

static void rate_columns(double (*rate)(const void *, int), const void *what, int max_thr, const double *peak) {
    for (int th = 1; th <= max_thr; th++) {
        double g = 0;
        Attempt a = {.threads = th};
        while (measure_again(&a)) g = rate(what, th);
        printf("| %7.1f %4.0f%%%s", g, 100 * g / peak[th], mark(&a));
    }
    printf("\n");
    fflush(stdout);
}

// ----------------------------------------------------------------------------

#ifndef BENCH_LIBRARY   // dev/blas_compare.c includes this file for its shapes and timers
int main(void) {
    int max_thr = max_threads() < 2 ? max_threads() : 2;
    double load_start = load_average();
    printf("ouro.c benchmark: %d thread%s available (OpenMP %s), load average %.2f at the start\n",
           max_threads(), max_threads() > 1 ? "s" : "",
#ifdef _OPENMP
           "on",
#else
           "off",
#endif
           load_start);

    // the 100% of every "%peak" (see the top comment)
    double measured[3] = {0}, peak[3] = {0};
    for (int th = 1; th <= max_thr; th++) {
        measured[th] = fma_peak(th);
        peak[th] = measured[th] > th * measured[1] ? measured[th] : th * measured[1];
    }
    one_thread_peak = peak[1];
    printf("FMA peak (plain C, %d chains x %d floats, best of 5):", PEAK_CHAINS, PEAK_LANES);
    for (int th = 1; th <= max_thr; th++) {
        printf("  %d thread%s %.1f GFLOP/s", th, th > 1 ? "s" : "", peak[th]);
        if (peak[th] > measured[th]) printf(" (measured %.1f; %d x 1 thread is used)", measured[th], th);
    }
    if (max_thr > 1 && measured[2] < 0.9 * peak[2])
        printf("\nanother process held a core during the probe: the 2-thread figures are lower bounds");
    double kernel = micro_kernel_rate();
    printf("\nmatmul micro-kernel alone (%dx%d tile, KC %d, operands in L1): %.1f GFLOP/s = %.0f%% of the 1-thread peak\n"
           "  (the ceiling of every matmul; what a matmul loses below it goes to packing and to memory)",
           MR, NR, KC, kernel, 100 * kernel / peak[1]);
    if (kernel < 0.9 * peak[1])  // it reaches 93-99% on a quiet core of the machine it was tuned on
        printf("\n  (below 90%%: something else is using this core's caches or load ports, or its clock\n"
               "   dropped: the figures below are likely low too)");
    printf("\n\nFLOPs (useful multiply-adds x 2 of the matrix products; elementwise work not counted):\n"
           "  train step = 3 x B*S*T x [ L*2*(4d^2 + 3dF) + L*2*2*d*(S+1)/2 + 2*V*d ]   (attention: causal keys only)\n"
           "  decode     = sum over tokens of  n_steps x [ L*2*(4d^2 + 3dF) + L*2*2*d*(pos+1) ] + 2*V*d\n");

    BenchConfig configs[2] = {bench_config("tiny", 128, 4, 344, 512), bench_config("medium", 256, 8, 688, 4096)};
    double decode_gbs[2] = {0}, read_gbs[2] = {0};
    char qexit_title[64];
    snprintf(qexit_title, sizeof qexit_title, "decode Q-exit q=%g (avg depth)", BENCH_Q);
    printf("\n%-7s %3s | %9s %7s %5s | %-25s | %-32s | %6s %9s\n", "config", "thr", "train", "", "",
           "decode full depth T", qexit_title, "RSS", "act");
    printf("%-7s %3s | %9s %7s %5s | %9s %7s %5s  | %9s %5s %7s %5s    | %6s %9s\n", "", "", "tok/s", "GFLOP/s",
           "%peak", "tok/s", "GFLOP/s", "%peak", "tok/s", "depth", "GFLOP/s", "%peak", "MiB", "B/token");
    for (int i = 0; i < 2; i++) {
        const BenchConfig *b = &configs[i];
        export_bench_model(b);
        for (int th = 1; th <= max_thr; th++) {
            BenchResult r = {0};
            Attempt a = {.threads = th};
            while (measure_again(&a)) r = bench_run(b, th);
            if (th == 1) {
                decode_gbs[i] = r.decode_gbs;
                double weights, kv;
                read_gbs[i] = read_bandwidth(decode_working_set(&b->cfg, &weights, &kv));  // right after, see below
            }
            printf("%-7s %3d%s| %9.0f %7.1f %4.0f%% | %9.0f %7.2f %4.1f%%  | %9.0f %5.2f %7.2f %4.1f%%    | %6.0f %9.0f\n",
                   b->name, th, mark(&a), r.tok_per_s, r.gflops, 100 * r.gflops / peak[th],
                   r.decode_tok_per_s[0], r.decode_gflops[0], 100 * r.decode_gflops[0] / peak[th],
                   r.decode_tok_per_s[1], r.qexit_depth, r.decode_gflops[1], 100 * r.decode_gflops[1] / peak[th],
                   r.rss_mib, r.act_bytes_per_token);
            fflush(stdout);
        }
        remove(BENCH_MODEL_PATH);
    }
    printf("  (tiny: d 128 H 4 F 344 L 2 T 4 V 512; medium: d 256 H 8 F 688 L 2 T 4 V 4096; both B 8 S 256.\n"
           "   RSS is the process peak so far: the configs run smallest first. act: activation bytes per\n"
           "   training token, ouro.c's acts_bytes_per_token. *: in %d attempts, a probe before or after\n"
           "   found the cores busy with another process: the figure is too low)\n", ATTEMPTS);
    // decoding is bound by memory traffic: compare it with a plain read of as many bytes, its
    // working set (the weights and the full-context KV caches). The read is timed right after the
    // decoding and again now, and the faster one kept (the machine has slow phases). Decoding can
    // still beat it: the read streams the whole set every pass, while a token re-reads its layer
    // weights at every step, and the caches keep part of them.
    printf("\ndecoding at full depth reads every layer weight once per step, its K/V, and the head once (decode_bytes):\n");
    for (int i = 0; i < 2; i++) {
        const Config *c = &configs[i].cfg;
        double weights, kv;
        double probe = fmax(read_gbs[i], read_bandwidth(decode_working_set(c, &weights, &kv)));
        printf("  %-7s 1 thread %6.1f GB/s; a plain read of its %.1f MB (weights %.1f + KV caches %.1f): %6.1f GB/s"
               " (decode at %.0f%% of it)\n", configs[i].name, decode_gbs[i], (weights + kv) / 1e6, weights / 1e6,
               kv / 1e6, probe, 100 * decode_gbs[i] / probe);
    }

    printf("\nmatmul shapes (C = op(A) op(B), M x N x K; GFLOP/s = 2MNK / time, median of 5)\n");
    printf("%-7s %-24s %5s %5s %5s | %7s %5s ", "config", "product", "M", "N", "K", "1 thr", "%peak");
    if (max_thr > 1) printf("| %7s %5s", "2 thr", "%peak");
    printf("\n");
    for (int i = 0; i < 3; i++) {
        Shape shapes[32];
        int n = i < 2 ? model_shapes(&configs[i], shapes) : reference_shapes(shapes);
        const char *name = i < 2 ? configs[i].name : "ref";
        for (int k = 0; k < n; k++) {
            const Shape *sh = &shapes[k];
            printf("%-7s %-24s %5d %5d %5d ", name, sh->what, sh->M, sh->N, sh->K);
            rate_columns(shape_rate, sh, max_thr, peak);
        }
        if (i < 2) {
            const BenchConfig *b = &configs[i];
            printf("%-7s attention fwd+bwd, %3d heads  S %3d hd %3d ", name, b->B * b->cfg.H, b->S, b->cfg.d / b->cfg.H);
            rate_columns(attention_rate, b, max_thr, peak);
        }
    }
    printf("  LM head: one chunk of %d tokens. attention: one layer, forward and backward, useful FLOPs\n"
           "  (the causal half). ref: the shapes of issue 7 (4096 tokens, d 256: a d -> 3d projection and\n"
           "  a 4096-token LM head in one piece). *: as above, the cores were busy in every attempt\n", HEAD_ROWS);
    printf("\nload average %.2f at the end (the machine is shared: a busy machine lowers every figure)\n", load_average());
    return 0;
}
#endif
