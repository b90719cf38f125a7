// ouro.c: a looped language model (LoopLM, the "Ouro" models of arXiv 2510.25741) in one file.
//
// One stack of L transformer layers is applied T times with the same weights. After every step
// t a shared LM head reads the state (logits_t) and an exit gate gives the probability of
// stopping there. Training (Stage I) minimises the expected cross-entropy over exit steps minus
// an entropy bonus; Stage II trains the gate alone. The spec is docs/LOOPLM.md (a copy of the
// project's model sheet); the notation is the same everywhere:
//     B batch, S sequence length, N = B*S tokens, d width, H heads, hd = d/H head size,
//     F SwiGLU width, V vocabulary, L layers, T recurrent steps (loops).
//
// Reading order (the layers are forward/backward pairs of free functions on flat arrays;
// docs/reading-guide.md walks through them):
//   1. configuration and its validation
//   2. parameters: one allocation carved into named tensors, initialisation
//   3. the building blocks: matmul, RMSNorm, RoPE, attention, SwiGLU, embedding
//   4. the LoopLM read-outs: LM head + cross-entropy, exit gate, exit distribution, both losses
//   5. activations: one allocation carved into named tensors, with a leading step dimension
//   6. ouro_forward / ouro_backward: the loop over steps, once each way
//   7. metrics and Q-exit
//   8. AdamW and gradient clipping
//   9. checkpoints
//  10. the export file for run.c
//
// All tensors are `real`: float, or double when built with -DOURO_DOUBLE. The double build exists
// for the gradient check in test_all.c, where central differences are then accurate to ~1e-8
// instead of ~1e-3, so the check can be tight. Programs include this file (llm.c style).
#ifndef OURO_C
#define OURO_C

#include "common.h"
#include <float.h>
#include <stddef.h>
#include <tgmath.h>  // exp, log, sqrt pick the float or double version from the argument type
#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef OURO_DOUBLE
typedef double real;
#else
typedef float real;
#endif

int max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// Sets the number of threads the next parallel regions use (nothing without OpenMP).
void set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

// True inside a parallel region: kernels called from one (attention runs one head per thread)
// then stay on their thread instead of nesting.
int in_parallel(void) {
#ifdef _OPENMP
    return omp_in_parallel();
#else
    return 0;
#endif
}

// The forward elementwise kernels (rmsnorm_forward, rope_apply, swiglu_forward, residual_forward,
// exit_gate_forward: the ones run.c calls for every token) split their rows over the threads only
// from PARALLEL_MIN_VALUES values up; the backward and optimizer kernels, which only ever see a
// training batch, always do. Below it they run on the calling thread, outside any parallel region:
// entering one costs ~0.4 us even with one thread (the `if` clause does not avoid it), and for
// the single token that run.c decodes at a time that made a token ~25% slower.
#define PARALLEL_MIN_VALUES 16384

// ----------------------------------------------------------------------------
// 1. configuration

#define OURO_MAX_T 32                  // recurrent steps a model may be trained with
#define OURO_MAX_STEPS (2 * OURO_MAX_T) // evaluation may run up to 2T steps (extrapolation)

// The shape of a model. Stored verbatim (40 bytes) in checkpoint and export headers.
typedef struct {
    int V;            // vocabulary size
    int d;            // model width
    int H;            // attention heads; head size hd = d / H
    int F;            // SwiGLU hidden width
    int L;            // physical layers in the shared stack
    int T;            // recurrent steps: the stack is applied T times
    int max_seq_len;  // longest sequence: sizes the RoPE table
    int tied;         // 1: the LM head is the token embedding matrix
    float rope_theta; // RoPE base (10000)
    float norm_eps;   // RMSNorm epsilon (1e-6)
} Config;
_Static_assert(sizeof(Config) == 40, "Config is a file header field: it must stay 40 bytes");

Config config_default(void) {
    Config c = {.V = 512, .d = 128, .H = 4, .F = 344, .L = 2, .T = 4, .max_seq_len = 256,
                .tied = 0, .rope_theta = 10000.0f, .norm_eps = 1e-6f};
    return c;
}

// Returns 0 if the config describes a model this code can build, else -1 with ouro_error set.
// `where` names the source (a file or "config") in the message.
int config_validate(const Config *c, const char *where) {
    if (c->V < 2 || c->V > 65536) return fail(where, "vocabulary size V=%d must be in [2, 65536] (tokens are uint16)", c->V);
    if (c->d < 2 || c->H < 1 || c->F < 1 || c->L < 1 || c->max_seq_len < 1)
        return fail(where, "sizes must be positive (d=%d H=%d F=%d L=%d max_seq_len=%d)", c->d, c->H, c->F, c->L, c->max_seq_len);
    if (c->T < 1 || c->T > OURO_MAX_T) return fail(where, "recurrent steps T=%d must be in [1, %d]", c->T, OURO_MAX_T);
    if (c->d % c->H != 0) return fail(where, "width d=%d is not divisible by the head count H=%d", c->d, c->H);
    if ((c->d / c->H) % 2 != 0) return fail(where, "head size d/H=%d must be even for RoPE", c->d / c->H);
    if (c->max_seq_len > (1 << 20)) return fail(where, "max_seq_len=%d is larger than 2^20", c->max_seq_len);
    if (c->tied != 0 && c->tied != 1) return fail(where, "tied must be 0 or 1, got %d", c->tied);
    if (!(c->rope_theta > 1.0f) || !isfinite(c->rope_theta)) return fail(where, "rope_theta=%g must be > 1", c->rope_theta);
    if (!(c->norm_eps > 0.0f) || !(c->norm_eps < 1.0f)) return fail(where, "norm_eps=%g must be in (0, 1)", c->norm_eps);
    return 0;
}

// ----------------------------------------------------------------------------
// 2. parameters
//
// Sixteen tensors in one allocation. Per-layer weights are stacked with a leading L dimension:
// layer l's Q projection is wq + l*d*d. Gradients and the two AdamW moments use the same layout,
// so "element i of the parameters" means the same weight in all four arrays.

enum {
    P_EMBED, P_WQ, P_WK, P_WV, P_WO,
    P_NORM_ATTN_PRE, P_NORM_ATTN_POST, P_NORM_MLP_PRE, P_NORM_MLP_POST,
    P_MLP_GATE, P_MLP_UP, P_MLP_DOWN,
    P_NORM_FINAL, P_HEAD, P_EXIT_W, P_EXIT_B,
    N_PARAM_TENSORS
};

static const char *const param_names[N_PARAM_TENSORS] = {
    "embed", "wq", "wk", "wv", "wo",
    "norm_attn_pre", "norm_attn_post", "norm_mlp_pre", "norm_mlp_post",
    "mlp_gate", "mlp_up", "mlp_down",
    "norm_final", "head", "exit_w", "exit_b",
};

// Weight decay applies to matrices only (not to norm weights or the exit gate).
static const int param_is_matrix[N_PARAM_TENSORS] = {1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 1, 0, 0};

typedef struct {
    real *embed;           // (V, d)    token embedding
    real *wq, *wk, *wv;    // (L, d, d) attention projections, out = x @ w^T
    real *wo;              // (L, d, d) attention output projection
    real *norm_attn_pre;   // (L, d)    the four RMSNorm weights of the sandwich layer
    real *norm_attn_post;  // (L, d)
    real *norm_mlp_pre;    // (L, d)
    real *norm_mlp_post;   // (L, d)
    real *mlp_gate;        // (L, F, d) SwiGLU: down( silu(x @ gate^T) * (x @ up^T) )
    real *mlp_up;          // (L, F, d)
    real *mlp_down;        // (L, d, F)
    real *norm_final;      // (d)       RMSNorm after every step
    real *head;            // (V, d)    LM head; when tied it points at embed (no storage)
    real *exit_w;          // (d)       exit gate z = h . exit_w + exit_b
    real *exit_b;          // (1)
} Params;

// Number of elements of each tensor; returns -1 if the total, or the four parameter-sized arrays
// of training (weights, gradients, two AdamW moments), would overflow size_t.
int param_sizes(const Config *c, size_t sizes[N_PARAM_TENSORS], size_t *total) {
    size_t V = c->V, d = c->d, F = c->F, L = c->L, dd, Ldd, Ld, Fd, LFd, Vd;
    if (size_mul(d, d, &dd) || size_mul(L, dd, &Ldd) || size_mul(L, d, &Ld) ||
        size_mul(F, d, &Fd) || size_mul(L, Fd, &LFd) || size_mul(V, d, &Vd))
        return fail("config", "parameter count overflows size_t");
    size_t s[N_PARAM_TENSORS] = {Vd, Ldd, Ldd, Ldd, Ldd, Ld, Ld, Ld, Ld, LFd, LFd, LFd,
                                 d, c->tied ? 0 : Vd, d, 1};
    size_t sum = 0;
    for (int i = 0; i < N_PARAM_TENSORS; i++) {
        sizes[i] = s[i];
        if (size_add(sum, s[i], &sum)) return fail("config", "parameter count overflows size_t");
    }
    if (sum > SIZE_MAX / (4 * sizeof(real))) return fail("config", "parameters (%zu) too many to allocate", sum);
    *total = sum;
    return 0;
}

// Points the fields of p at consecutive slices of memory.
void params_carve(Params *p, real *memory, const size_t sizes[N_PARAM_TENSORS], int tied) {
    real **ptrs[N_PARAM_TENSORS] = {
        &p->embed, &p->wq, &p->wk, &p->wv, &p->wo,
        &p->norm_attn_pre, &p->norm_attn_post, &p->norm_mlp_pre, &p->norm_mlp_post,
        &p->mlp_gate, &p->mlp_up, &p->mlp_down,
        &p->norm_final, &p->head, &p->exit_w, &p->exit_b,
    };
    for (int i = 0; i < N_PARAM_TENSORS; i++) {
        *ptrs[i] = memory;
        memory += sizes[i];
    }
    if (tied) p->head = p->embed;  // so the head's gradient lands in the embedding's
}

// The tensor i of a parameter-shaped array (parameters, gradients or a moment).
real *param_tensor(real *memory, const size_t sizes[N_PARAM_TENSORS], int i) {
    for (int j = 0; j < i; j++) memory += sizes[j];
    return memory;
}

// ----------------------------------------------------------------------------
// the model object

// Hyperparameters of the two training objectives (LOOPLM.md §3).
typedef struct {
    float beta;   // Stage I entropy bonus (0.1)
    float k;      // Stage II sharpness of the "continue" target (50)
    float gamma;  // Stage II improvement threshold in nats (0.005)
} Objective;

typedef enum { OURO_EVAL, OURO_STAGE1, OURO_STAGE2 } OuroMode;

// What ouro_forward measured (means over the N tokens of the batch).
typedef struct {
    int n_steps;                  // steps run; ce[] has that many entries
    double ce[OURO_MAX_STEPS];    // mean CE_t at each step t (index t-1)
    double p[OURO_MAX_T];         // mean exit probability p(t) over tokens
    double loss_stage1;           // mean of sum_t p(t) CE_t - beta H(p)
    double loss_stage2;           // the Stage II gate loss
    double expected_ce;           // mean of sum_t p(t) CE_t
    double entropy;               // mean H(p) in nats
    double mean_exit_step;        // mean of sum_t t p(t), steps counted from 1
} Metrics;

typedef struct LayerActs LayerActs;
typedef struct Acts Acts;

typedef struct {
    Config cfg;
    Objective obj;
    size_t param_sizes[N_PARAM_TENSORS];
    size_t n_params;
    real *params_memory;  Params params;
    real *grads_memory;   Params grads;  // NULL until ouro_zero_grad or a training forward
    real *adam_m, *adam_v;               // AdamW first and second moments, same layout
    uint64_t step;                       // optimizer steps taken (bias correction, schedules)
    real *rope_cos, *rope_sin;           // (max_seq_len, hd/2)
    // activations of the last forward; allocated for batch_cap sequences of seq_cap tokens
    int batch_cap, seq_cap;
    real *acts_memory;
    Acts *acts;
    int *inputs, *targets;               // (N) copies of the last batch
    int B, S, n_steps;                   // shape of the last forward
    OuroMode mode;                       // the last forward's, until ouro_backward takes its gradient
    OuroMode grad_mode;                  // the objective whose gradient ouro_backward last added:
                                         // ouro_adamw steps its tensors (Stage II: the gate alone)
    Metrics metrics;
} Ouro;

void rope_table_fill(Ouro *m) {
    const Config *c = &m->cfg;
    int half = c->d / c->H / 2;
    for (int pos = 0; pos < c->max_seq_len; pos++)
        for (int i = 0; i < half; i++) {
            // frequency theta^(-2i/hd): element i pairs with element i + hd/2 (rotate-half)
            double freq = pow((double)c->rope_theta, -2.0 * i / (2.0 * half));
            m->rope_cos[(size_t)pos * half + i] = (real)cos(pos * freq);
            m->rope_sin[(size_t)pos * half + i] = (real)sin(pos * freq);
        }
}

// Allocates a model with the given shape (parameters uninitialised). Returns 0 or -1.
int ouro_build(Ouro *m, const Config *cfg) {
    memset(m, 0, sizeof *m);
    if (config_validate(cfg, "config")) return -1;
    m->cfg = *cfg;
    m->obj = (Objective){.beta = 0.1f, .k = 50.0f, .gamma = 0.005f};
    if (param_sizes(cfg, m->param_sizes, &m->n_params)) return -1;
    m->params_memory = xmalloc(m->n_params * sizeof(real));
    params_carve(&m->params, m->params_memory, m->param_sizes, cfg->tied);
    size_t rope;
    if (size_mul((size_t)cfg->max_seq_len, (size_t)(cfg->d / cfg->H / 2), &rope) ||
        rope > SIZE_MAX / sizeof(real))
        return fail("config", "RoPE table size overflows");
    m->rope_cos = xmalloc(rope * sizeof(real));
    m->rope_sin = xmalloc(rope * sizeof(real));
    rope_table_fill(m);
    return 0;
}

// Initialisation (documented choice):
//   matrices ~ normal(0, 0.02); RMSNorm weights 1; exit gate 0, so lambda = sigmoid(0) = 0.5.
// GPT-2 also scales residual output projections (wo, mlp_down) down with depth, because each
// adds its output to the residual stream. Here every sub-block output passes through its own
// RMSNorm (the sandwich layer) before it is added, which removes that scale, so the same 0.02
// is used for every matrix.
void ouro_init_params(Ouro *m, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < N_PARAM_TENSORS; i++) {
        real *w = param_tensor(m->params_memory, m->param_sizes, i);
        for (size_t j = 0; j < m->param_sizes[i]; j++)
            w[j] = param_is_matrix[i] ? (real)(0.02 * rng_normal(&rng)) : (real)(i == P_EXIT_W || i == P_EXIT_B ? 0 : 1);
    }
}

// Allocates and initialises a fresh model. Returns 0 or -1 (bad config).
int ouro_init(Ouro *m, const Config *cfg, uint64_t seed) {
    if (ouro_build(m, cfg)) return -1;
    ouro_init_params(m, seed);
    return 0;
}

// Gradient and AdamW buffers, allocated by the first ouro_zero_grad or training forward (zeroed).
void ouro_alloc_training(Ouro *m) {
    if (m->grads_memory) return;
    m->grads_memory = xcalloc(m->n_params, sizeof(real));
    m->adam_m = xcalloc(m->n_params, sizeof(real));
    m->adam_v = xcalloc(m->n_params, sizeof(real));
    params_carve(&m->grads, m->grads_memory, m->param_sizes, m->cfg.tied);
}

void ouro_zero_grad(Ouro *m) {
    ouro_alloc_training(m);
    memset(m->grads_memory, 0, m->n_params * sizeof(real));
}

// ----------------------------------------------------------------------------
// 3. building blocks

// matmul: the one matrix-multiply kernel behind every linear layer and attention product.
//
// C (M,N) = op(A) (M,K) · op(B) (K,N), or C += ... when accumulate is 1. Row-major with leading
// dims lda, ldb, ldc; op(X) = X (transX = 0) or X^T (transX = 1: X is stored transposed).
//
// Why it is blocked like this (the GotoBLAS/BLIS scheme). A core does 2 FMAs of 8 floats per
// cycle but loads only about 2 vectors per cycle, so every loaded value must feed several FMAs,
// from the closest cache possible:
//   - register tile MR x NR = 6 x 16: this block of C stays in 12 ymm registers while k runs;
//     each k step loads 16 values of B (2 vectors) and broadcasts 6 values of A for 12 FMAs.
//     With the 3 registers those loads need, that is 15 of AVX2's 16.
//   - KC = 256: one micro-kernel call runs k through KC values, so its KC x NR sliver of B
//     (16 KiB) stays in the 32 KiB L1 while the calls run down every MR-row sliver of A.
//   - A_BLOCK = 72 Ki values (288 KiB): a packed block of op(A) stays in the 512 KiB L2 and
//     meets every sliver of B. Its shape follows A's layout, because packing streams A from
//     memory and long contiguous runs read about twice as fast: 3*KC = 768 deep x 96 rows when
//     A's rows lie along memory (transA = 0), KC deep x 288 rows when its columns do.
//   - B_PANEL = 1 Mi values (4 MiB): the packed panel of op(B), as deep as the A block (4096
//     columns wide at 256 deep), sits in L3 and is shared by all threads.
// Each block is first packed: copied into the exact order the micro-kernel reads it
// (contiguous, 64-byte aligned, zero-padded to whole slivers). Packing absorbs the transposes,
// so one micro-kernel serves all four (transA, transB) cases, and edge tiles are ordinary tiles.
// One exception: when N <= 4 NR (narrow products: a model with d or F <= 64), each value
// of A feeds so few FLOPs that packing it costs as much as using it, and the micro-kernel reads
// op(A) where it lies, through its strides. Attention uses the same two pieces, pack_block and
// macro_kernel, directly (see attention_head_forward).
//
// Threads share the packed panel of B and split the rows of C into blocks.
// With several threads there are two B panels, used in turn: a thread that finishes its blocks
// early packs its share of the next panel while the others still read the current one, and one
// barrier per panel (after packing it) is all the waiting there is.
// Every element of C sums its products in the same order (KC values at a time, from k = 0 up,
// each group added into C) whatever the thread count and block shapes: results are bitwise
// identical with 1, 2, ... threads and without OpenMP. The rows are cut into a multiple of
// `threads` blocks (rounding each up to whole slivers can leave fewer: at most one with 2 threads,
// more with many threads and a small M); threads take them dynamically.
// A product with few rows and a deep K is cut along K instead. The weight gradients dW = dy^T x
// are such products: M is d or F, K every token of the batch (so is the medium config's LM head
// dX, M = 512 tokens, K = V = 4096). Split by rows over 2 threads, the tiny config's dW products
// gave each thread 62 to 174 rows, too few to be worth a shared B panel and a barrier every KC.
// So K is cut into parts of SPLIT_DEPTH or more (the last one may be shorter); part 0 is
// computed into C (added to it when accumulating), every other part from zero into a buffer of
// its own, and those are added into C in order at the end. When the threads divide the parts
// evenly, each thread computes whole parts alone, with panels of its own and no barrier;
// otherwise the parts run one after another, each split by rows over all threads. The parts
// follow from the shape alone, so the sums, and the results, are the same for any thread count.
// The cost: an M x N buffer per part after the first, and the pass that adds them.
// Called from inside a parallel region, matmul runs on the calling thread alone; its packing
// buffers are per call, so it is re-entrant.

#define MR 6
#define NR 16
#define KC 256
#define A_BLOCK (72 * 1024)
#define B_PANEL (1024 * 1024)
#define L2_BYTES (512 * 1024)   // the L2 above: wider B panels are prefetched (macro_kernel)
#define SPLIT_DEPTH 1024        // a product whose K is at least twice this, whose M is at most
#define SPLIT_MAX_ROWS 1024     // SPLIT_MAX_ROWS and whose C has at most SPLIT_MAX_VALUES values
#define SPLIT_MAX_VALUES (256 * 1024)   // is cut into parts of K, at most SPLIT_MAX_PARTS
#define SPLIT_MAX_PARTS 8               // (so the buffers for parts hold at most 7 Mi values)

static int min_int(int a, int b) { return a < b ? a : b; }
static int max_int(int a, int b) { return a > b ? a : b; }
static int round_up(int x, int multiple) { return (x + multiple - 1) / multiple * multiple; }

// 64-byte aligned packing buffer. Running out of memory for a few MiB is not recoverable here
// (matmul returns nothing), so this is the one place that stops the program.
static real *alloc_panel(size_t count) {
    real *p = aligned_alloc(64, (count * sizeof(real) + 63) / 64 * 64);
    if (!p) { fprintf(stderr, "matmul: out of memory for a %zu-value packing buffer\n", count); abort(); }
    return p;
}

// Address of op(X)[row][col], X row-major with leading dim ld.
static const real *element(const real *X, int ld, int trans, int row, int col) {
    return trans ? X + (size_t)col * ld + row : X + (size_t)row * ld + col;
}

// o[r] = x[r * stride] for r < W, zero from r = n on (the padding of an edge sliver).
// A whole contiguous column is a memcpy: gcc builds the loop below from scalar loads even when
// stride is 1, and the copy runs 2.5x faster (attention packs four such panels per head: v in
// the forward; k, dy and q in the backward).
static inline void pack_column(real *restrict o, const real *restrict x, size_t stride, int n, int W) {
    if (n >= W && stride == 1)
        memcpy(o, x, (size_t)W * sizeof(real));
    else if (n >= W)
        for (int r = 0; r < W; r++) o[r] = x[r * stride];
    else
        for (int r = 0; r < W; r++) o[r] = r < n ? x[r * stride] : 0;
}

// Packs the block op(X)[0..rows)[0..kc) (X points at its first element) into slivers of W rows:
// element (r, k) goes to sliver r / W, position k*W + r % W. Row r of the block lies along a
// stored row (X + r*ld, transposed = 0) or down a stored column (X + r, stride ld); both loops
// walk memory in stored order. Serves op(A) (W = MR) and op(B) (W = NR); W is a constant at
// each call, so gcc unrolls and vectorises pack_column.
static void pack_block(real *restrict out, const real *restrict X, int ld, int transposed,
                       int rows, int kc, int W) {
    if (transposed)   // stored row k holds the k-th value of every row: copy it in one pass
        for (int k = 0; k < kc; k++) {
            // Each stored row is a short run (the block's width, ~1 KiB), far from the next one:
            // the hardware prefetcher follows that poorly, so ask for row k + 8 now. The dW
            // products, whose A is packed this way from memory, run 5-12% faster.
            if (k + 8 < kc)
                for (int s = 0; s < rows; s += 64 / (int)sizeof(real))   // one per cache line
                    __builtin_prefetch(X + (size_t)(k + 8) * ld + s);
            for (int s = 0; s < rows; s += W)
                pack_column(out + (size_t)s * kc + (size_t)k * W, X + (size_t)k * ld + s, 1, rows - s, W);
        }
    else              // W stored rows, read side by side
        for (int s = 0; s < rows; s += W)
            for (int k = 0; k < kc; k++) {
                // W rows at once are more streams than the prefetcher keeps up with: while this
                // sliver is copied, ask for the next sliver's rows, one cache line at a time.
                // The forward and dX products pack their A (activations) this way: the copy runs
                // ~2x faster from memory; a tiny training step 1-3% (paired steps, 1 and 2 threads).
                if (k % (64 / (int)sizeof(real)) == 0)
                    for (int r = s + W; r < min_int(s + 2 * W, rows); r++) __builtin_prefetch(X + (size_t)r * ld + k);
                pack_column(out + (size_t)s * kc + (size_t)k * W, X + (size_t)s * ld + k, ld, rows - s, W);
            }
}

// The micro-kernel: C (MR,NR) = or += a (MR,kc) · b (kc,NR), kc >= 1. b is a packed sliver;
// row i of a, at depth k, is a[i * rs + k * ks]: rs = 1, ks = MR for a packed sliver, the
// strides of op(A) itself when it is read in place (see macro_kernel).
// acc has constant sizes, so gcc keeps it in 12 ymm registers. "unroll 1" keeps j a loop, which
// gcc vectorises into two 8-wide FMAs per row (left alone, gcc unrolls j away and vectorises
// the k loop instead, several times slower). k = 0 initialises acc, which saves a memset.
// Inlined at each call, so that the packed case compiles with its constant strides.
static inline __attribute__((always_inline))
void micro_kernel(int kc, const real *restrict a, size_t rs, size_t ks, const real *restrict b,
                  real *restrict C, int ldc, int add) {
    real acc[MR][NR];
    // C is touched only after the k loop; in a training step it is rarely in cache (activations
    // are MBs, the weight gradients accumulate across the whole step). Asking for its lines now
    // lets the misses overlap the FMAs: 3-10% on the step, nothing lost when C is cached.
    for (int i = 0; i < MR; i++) {
        __builtin_prefetch(C + (size_t)i * ldc, 1);            // 1: for writing
        __builtin_prefetch(C + (size_t)i * ldc + NR - 1, 1);   // the row's second line, if any
    }
    for (int i = 0; i < MR; i++) {
        #pragma GCC unroll 1
        for (int j = 0; j < NR; j++) acc[i][j] = a[i * rs] * b[j];
    }
    #pragma GCC unroll 4   // four k steps per loop trip: ~3% faster, same arithmetic
    for (int k = 1; k < kc; k++) {
        a += ks, b += NR;
        for (int i = 0; i < MR; i++) {
            #pragma GCC unroll 1
            for (int j = 0; j < NR; j++) acc[i][j] += a[i * rs] * b[j];
        }
    }
    for (int i = 0; i < MR; i++) {
        real *c = C + (size_t)i * ldc;
        #pragma GCC unroll 1
        for (int j = 0; j < NR; j++) c[j] = add ? c[j] + acc[i][j] : acc[i][j];
    }
}

// C block (m,n) = or += A block (m,kp) · packed B panel (kp,n), one MR x NR tile and KC of depth
// per micro-kernel call. The B sliver (KC x NR) stays in L1 while A slivers stream past it from
// L2. Every group of KC products is added into C in k order (the first one overwrites C unless
// `add`), which fixes the rounding whatever kp is.
// The A block is packed in Ap (A = NULL), or read in place: A points at its first element, with
// strides rs between rows and ks along k; then Ap holds only its last sliver when that one is
// partial (packing pads it with zero rows; in place it would read past the block).
// One compiled copy, for runtime sizes (KEEP_ONE_COPY). gcc otherwise makes copies specialised
// for a caller's constant arguments, and in a program that fixes them (a small driver with S = 256,
// d = 128, hd = 32: constant depth and a contiguous A) it vectorised one copy's k loop instead of
// j, with the tile in memory rather than registers: that copy ran q k^T at 11 GFLOP/s, not 57.
// Our own callers pass runtime sizes: their steps measured within 1% either way.
#if defined(__GNUC__) && !defined(__clang__)
#define KEEP_ONE_COPY __attribute__((noinline, noclone))
#else
#define KEEP_ONE_COPY
#endif
KEEP_ONE_COPY
static void macro_kernel(int m, int n, int kp, const real *Ap, const real *A, size_t rs, size_t ks,
                         const real *Bp, real *C, int ldc, int add) {
    int in_place = A ? m / MR * MR : 0;   // rows read in place, the others packed
    // A wide B panel larger than L2 (the medium model's LM head, 4096 columns, and its d -> F
    // projections, 688) is read from L3, and the first call with each sliver waits for it. The
    // next sliver lies right after this one: ask for it a few cache lines per call. bench.c's
    // reference forward products (4096 x 768 and 4096 x 4096, paired runs) take 0.94-0.99x the
    // time. For a panel in L2 it only costs (the tiny step 1.03x when every product did it), and
    // for a deep one (the reference d -> 3d dX: 768 deep, 256 wide) it gained nothing.
    int wide = kp <= KC && (size_t)round_up(n, NR) * kp * sizeof(real) > L2_BYTES;
    int calls = (m + MR - 1) / MR;   // micro-kernel calls per B sliver (a wide panel is one KC deep)
    int sliver_lines = kp * NR * (int)sizeof(real) / 64;              // a sliver's cache lines,
    int per_call = (sliver_lines + calls - 1) / calls;                // spread over those calls
    for (int j = 0; j < n; j += NR) {
        const char *next = (const char *)(Bp + (size_t)(j + NR) * kp);   // the next sliver
        int ahead = wide && j + NR < n ? sliver_lines : 0;              // its lines to ask for
        for (int k = 0; k < kp; k += KC) {
            const real *b = Bp + (size_t)j * kp + (size_t)k * NR;
            int kc = min_int(KC, kp - k), add_k = add || k > 0;
            for (int i = 0, call = 0; i < m; i += MR, call++) {
                for (int l = call * per_call; l < min_int((call + 1) * per_call, ahead); l++) __builtin_prefetch(next + 64 * l);
                real *c = C + (size_t)i * ldc + j;
                int whole = i + MR <= m && j + NR <= n;
                real tile[MR * NR];   // an edge tile is computed whole here, then its part inside C kept
                real *out = whole ? c : tile;
                int ld_out = whole ? ldc : NR, add_out = whole && add_k;
                if (i < in_place) micro_kernel(kc, A + i * rs + k * ks, rs, ks, b, out, ld_out, add_out);
                else micro_kernel(kc, Ap + (size_t)(i - in_place) * kp + (size_t)k * MR, 1, MR, b, out, ld_out, add_out);
                if (whole) continue;
                for (int r = 0; r < min_int(MR, m - i); r++)
                    for (int q = 0; q < min_int(NR, n - j); q++)
                        c[(size_t)r * ldc + q] = add_k ? c[(size_t)r * ldc + q] + tile[r * NR + q] : tile[r * NR + q];
            }
        }
    }
}

// The blocked product on `threads` threads (1: the calling thread alone), K >= 1.
static void matmul_blocked(real *C, int ldc, const real *A, int lda, int transA, const real *B, int ldb,
                           int transB, int M, int N, int K, int accumulate, int threads) {
    // Block shapes (see the top): kp_max deep, a multiple of KC unless it is all of K; mc rows,
    // M cut as evenly as possible into a multiple of `threads` blocks, rounded up to MR; nc_max
    // columns.
    int kp_max = min_int(K, transA ? KC : 3 * KC);
    int mc_max = max_int(MR, A_BLOCK / kp_max / MR * MR);
    int blocks = round_up((M + mc_max - 1) / mc_max, threads);
    int mc = round_up((M + blocks - 1) / blocks, MR);
    int nc_max = min_int(round_up(N, NR), max_int(NR, B_PANEL / kp_max / NR * NR));
    // op(A) is read in place, not packed, when few slivers of B will read it: N <= 4 NR. Packing
    // it took about as long as multiplying (each value feeds only 2 x N FLOPs); in place, a
    // 64 x 32 x 256 product ran ~20% faster (attention's P v, when it still went through matmul).
    // Our bench configs never take this path (N is d, F or V >= 128); models with d or F <= 64 do.
    int a_in_place = N <= 4 * NR;
    // two panels of op(B) when threads share them: a thread may pack the next panel while the
    // other still multiplies with the current one, so one barrier per panel is enough
    size_t panel = (size_t)kp_max * nc_max;
    real *Bp = alloc_panel(threads > 1 ? 2 * panel : panel);

    #pragma omp parallel num_threads(threads) if (threads > 1)
    {
        real *Ap = alloc_panel((size_t)mc * kp_max);
        int round = 0;
        for (int jc = 0; jc < N; jc += nc_max) {
            int nc = min_int(nc_max, N - jc), nc_share = round_up((nc + threads - 1) / threads, NR);
            for (int pc = 0; pc < K; pc += kp_max, round++) {
                int kp = min_int(kp_max, K - pc);
                int add = accumulate || pc > 0;   // the first products overwrite C unless accumulating
                real *Bq = Bp + (threads > 1 ? (size_t)(round % 2) * panel : 0);
                // all threads pack the (kp, nc) panel of op(B), each a contiguous share of columns,
                // and wait for each other (the barrier at the end of this loop)
                #pragma omp for schedule(static)
                for (int j = 0; j < nc; j += nc_share)
                    pack_block(Bq + (size_t)j * kp, element(B, ldb, transB, pc, jc + j), ldb, !transB,
                               min_int(nc_share, nc - j), kp, NR);
                // then each thread packs its own (mc, kp) blocks of op(A) and multiplies; dynamic,
                // so a thread slowed by other work takes fewer blocks (which thread computes a
                // block does not change its result). No barrier after it: the next panel goes
                // to the other buffer, and the barrier after packing it means that every thread
                // has finished with this one before it is packed over.
                #pragma omp for schedule(dynamic) nowait
                for (int ic = 0; ic < M; ic += mc) {
                    int m = min_int(mc, M - ic);
                    const real *a = element(A, lda, transA, ic, pc);
                    int packed_from = a_in_place ? m / MR * MR : 0;   // the rows to pack
                    if (packed_from < m)
                        pack_block(Ap, element(A, lda, transA, ic + packed_from, pc), lda, transA, m - packed_from, kp, MR);
                    macro_kernel(m, nc, kp, Ap, a_in_place ? a : NULL, transA ? 1 : lda, transA ? lda : 1,
                                 Bq, C + (size_t)ic * ldc + jc, ldc, add);
                }
            }
        }
        free(Ap);
    }
    free(Bp);
}

// Part p of a product cut along K into parts `depth` deep: part 0 into C (added to it when
// accumulating), part p > 0 from zero into partial + (p - 1) M N, an (M, N) block.
static void matmul_part(real *C, int ldc, real *partial, const real *A, int lda, int transA, const real *B, int ldb,
                        int transB, int M, int N, int K, int depth, int p, int accumulate, int threads) {
    int k0 = p * depth, kp = min_int(depth, K - k0);
    real *out = p ? partial + (size_t)(p - 1) * M * N : C;
    matmul_blocked(out, p ? N : ldc, element(A, lda, transA, 0, k0), lda, transA, element(B, ldb, transB, k0, 0), ldb,
                   transB, M, N, kp, p ? 0 : accumulate, threads);
}

void matmul(real *C, int ldc, const real *A, int lda, int transA,
            const real *B, int ldb, int transB, int M, int N, int K, int accumulate) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {   // an empty sum: C = 0, or C unchanged when accumulating
        if (!accumulate) for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, (size_t)N * sizeof(real));
        return;
    }
    int threads = 1;
#ifdef _OPENMP
    if (omp_get_level() == 0 && 2.0 * M * N * K > 2e6) threads = omp_get_max_threads();
#endif
    // Parts of K (see the top): their number and depth follow from the shape alone.
    int parts = 1;
    if (M <= SPLIT_MAX_ROWS && (size_t)M * N <= SPLIT_MAX_VALUES) parts = min_int(K / SPLIT_DEPTH, SPLIT_MAX_PARTS);
    if (parts < 2) {
        matmul_blocked(C, ldc, A, lda, transA, B, ldb, transB, M, N, K, accumulate, threads);
        return;
    }
    int depth = round_up((K + parts - 1) / parts, KC);   // whole KC groups, the last part shorter
    parts = (K + depth - 1) / depth;
    size_t size = (size_t)M * N;
    real *partial = alloc_panel((size_t)(parts - 1) * size);   // (parts - 1, M, N): parts 1.. (part 0 goes into C)
    // Part p: C (or partial p - 1) = or += op(A)[:, k0:k0+kp] op(B)[k0:k0+kp, :], each part
    // computed alone (when the threads divide the parts evenly) or on all threads in turn.
    // Same sums either way.
    if (parts % threads == 0) {
        #pragma omp parallel for schedule(dynamic) num_threads(threads) if (threads > 1)
        for (int p = 0; p < parts; p++)
            matmul_part(C, ldc, partial, A, lda, transA, B, ldb, transB, M, N, K, depth, p, accumulate, 1);
    } else {
        for (int p = 0; p < parts; p++)
            matmul_part(C, ldc, partial, A, lda, transA, B, ldb, transB, M, N, K, depth, p, accumulate, threads);
    }
    // C += partial 1, 2, ... in that order, rows split over the threads
    #pragma omp parallel for num_threads(threads) if (threads > 1)
    for (int i = 0; i < M; i++) {
        real *c = C + (size_t)i * ldc;
        for (int p = 1; p < parts; p++) {
            const real *q = partial + (size_t)(p - 1) * size + (size_t)i * N;
            for (int j = 0; j < N; j++) c[j] += q[j];
        }
    }
    free(partial);
}

// Linear layer without bias: out (N, OC) = x (N, C) @ w^T, w (OC, C).
void linear_forward(real *out, const real *x, const real *w, int N, int C, int OC) {
    matmul(out, OC, x, C, 0, w, C, 1, N, OC, C, 0);
}

// Given dout (N, OC): dx (N, C) += dout @ w (or = when accumulate_dx is 0) and dw += dout^T @ x.
void linear_backward(real *dx, real *dw, const real *dout, const real *x, const real *w,
                            int N, int C, int OC, int accumulate_dx) {
    if (dx) matmul(dx, C, dout, OC, 0, w, C, 0, N, C, OC, accumulate_dx);
    if (dw) matmul(dw, C, dout, OC, 1, x, C, 0, OC, C, N, 1);
}

// Vector helpers for the elementwise kernels. A sum in one accumulator is a chain of dependent
// adds, which the compiler may not reorder (float addition is not associative), so it runs at
// one add per ~3 cycles; eight partial sums are eight independent chains that gcc vectorises.
// The order of every sum is fixed, so results do not depend on the number of threads.

// a . b over n elements.
real inner_product(const real *a, const real *b, int n) {
    real part[8] = {0}, sum = 0;
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int u = 0; u < 8; u++) part[u] += a[j + u] * b[j + u];
    for (; j < n; j++) sum += a[j] * b[j];
    for (int u = 0; u < 8; u++) sum += part[u];
    return sum;
}

// max of x[0..n), n >= 1 (eight independent chains, as above).
real max_value(const real *x, int n) {
    real part[8], mx = x[0];
    for (int u = 0; u < 8; u++) part[u] = x[0];
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int u = 0; u < 8; u++) part[u] = x[j + u] > part[u] ? x[j + u] : part[u];
    for (; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    for (int u = 0; u < 8; u++) mx = part[u] > mx ? part[u] : mx;
    return mx;
}

// exp for the hot loops (the attention and LM-head softmaxes, SwiGLU), in plain C that gcc
// vectorises: libm's expf is one function call per element, about 8% of a training step.
//   x = n ln2 + r,  n = round(x / ln2),  |r| <= ln2/2,   so  exp(x) = 2^n exp(r)
// exp(r) is Cephes' expf polynomial (relative error < 1.7e-7 for |r| <= ln2/2); ln2 is split into
// 0.693359375 (few bits, so n * it is exact) and a small correction, so r keeps full precision;
// 2^n is written straight into a float's exponent bits. Measured: within 1.01 ulp of exp on
// [-87, 88]. x is clamped to that range first, so the result is always a normal float (exp(-100)
// gives 1.6e-38 rather than 4e-44, exp(100) 1.7e38 rather than inf: softmax and sigmoid do not
// notice). The clamp compares x's bits as integers because gcc does not vectorise a float
// compare-and-select that feeds arithmetic (under the default -ftrapping-math): two integer
// minimums (float_bits below). NaN and +-inf give NaN (the x - x term), so a broken activation
// stays visible. The forward and the backward (which recomputes attention probabilities) use the
// same function. The double build, which exists for the gradient check, keeps libm's exp.
#ifdef OURO_DOUBLE
static inline real fast_exp(real x) { return exp(x); }
#else
// A float's bits. Read as unsigned integers, the negative floats lie above all the positive ones
// and grow with their magnitude; read as signed integers, the positive floats order like the
// floats and every negative one lies below them. So clamp(x, -87, 88) is two integer minimums:
// an unsigned one caps the negative side at -87 and leaves every positive float alone, a signed
// one caps the positive side at 88 and leaves every negative float alone (+-inf and NaN land on
// a bound; the x - x term below still makes them NaN).
static inline uint32_t float_bits(float x) {
    union { float f; uint32_t u; } b = {.f = x};
    return b.u;
}

static inline float fast_exp(float x) {
    uint32_t bits = float_bits(x), lo = float_bits(-87.0f);
    int32_t hi = (int32_t)float_bits(88.0f);
    int32_t at_least_lo = (int32_t)(bits < lo ? bits : lo);       // unsigned minimum: x >= -87
    union { int32_t i; float f; } clamped = {.i = at_least_lo < hi ? at_least_lo : hi};  // signed: x <= 88
    float c = clamped.f;                                       // clamp(x, -87, 88)
    float n = (c * 1.44269504f + 12582912.0f) - 12582912.0f;  // round(c / ln2): adding 1.5 * 2^23
    float r = (c - n * 0.693359375f) + n * 2.12194440e-4f;     // drops the fraction; r = c - n ln2
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1;                                   // exp(r)
    union { int32_t i; float f; } two_n = {.i = ((int32_t)n + 127) << 23};  // 2^n, n in [-126, 127]
    return p * two_n.f + (x - x);
}
#endif

// The exponentials of a softmax, in place: x[j] = exp(scale * x[j] - shift) for j < n. Returns
// their sum (eight partial sums, as in inner_product).
real softmax_exp(real *x, int n, real scale, real shift) {
    real part[8] = {0}, sum = 0;
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int u = 0; u < 8; u++) {
            x[j + u] = fast_exp(x[j + u] * scale - shift);
            part[u] += x[j + u];
        }
    for (; j < n; j++) {
        x[j] = fast_exp(x[j] * scale - shift);
        sum += x[j];
    }
    for (int u = 0; u < 8; u++) sum += part[u];
    return sum;
}

// out = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps)      x, out: (N, d)  w: (d)  rstd: (N)
static void rmsnorm_row(real *out, real *rstd, const real *x, const real *w, int d, real eps) {
    real r = 1 / sqrt(inner_product(x, x, d) / d + eps);
    *rstd = r;
    for (int j = 0; j < d; j++) out[j] = x[j] * r * w[j];
}

void rmsnorm_forward(real *out, real *rstd, const real *x, const real *w, int N, int d, real eps) {
    if ((size_t)N * d < PARALLEL_MIN_VALUES) {
        for (int n = 0; n < N; n++) rmsnorm_row(out + (size_t)n * d, rstd + n, x + (size_t)n * d, w, d, eps);
        return;
    }
    #pragma omp parallel for
    for (int n = 0; n < N; n++) rmsnorm_row(out + (size_t)n * d, rstd + n, x + (size_t)n * d, w, d, eps);
}

// Given dout, dx (N, d) += the gradient (or = it, when accumulate_dx is 0) and dw += its own.
// With u = x * r (r = rstd), out = u * w:
//   dw += sum_n dout * u
//   du  = dout * w
//   dx += r * (du - u * mean(du * u))    the mean term is r's dependence on x:
//                                         dr/dx_j = -r^3 x_j / d = -r^2 u_j / d
// dw sums over tokens in fixed chunks of NORM_ROWS rows, then adds the chunk sums in chunk order:
// the rows are read contiguously (a sum per column would stride through memory), and every sum
// has the same order for any number of threads.
#define NORM_ROWS 32

void rmsnorm_backward(real *dx, real *dw, const real *dout, const real *x, const real *w,
                      const real *rstd, int N, int d, int accumulate_dx) {
    int n_chunks = (N + NORM_ROWS - 1) / NORM_ROWS;
    real *scratch = xmalloc((size_t)n_chunks * 2 * d * sizeof(real));  // per chunk: dw part, du
    #pragma omp parallel for
    for (int ch = 0; ch < n_chunks; ch++) {
        real *dw_part = scratch + (size_t)ch * 2 * d, *du = dw_part + d;
        for (int j = 0; j < d; j++) dw_part[j] = 0;
        for (int n = ch * NORM_ROWS; n < min_int(N, (ch + 1) * NORM_ROWS); n++) {
            const real *xn = x + (size_t)n * d, *dn = dout + (size_t)n * d;
            real *dxn = dx + (size_t)n * d, r = rstd[n];
            for (int j = 0; j < d; j++) du[j] = dn[j] * w[j];
            real mean = inner_product(du, xn, d) * r / d;  // mean(du * u)
            for (int j = 0; j < d; j++) {
                real g = r * (du[j] - xn[j] * r * mean);
                dxn[j] = accumulate_dx ? dxn[j] + g : g;
                dw_part[j] += dn[j] * xn[j] * r;
            }
        }
    }
    for (int ch = 1; ch < n_chunks; ch++)  // chunk sums in order, into chunk 0's
        for (int j = 0; j < d; j++) scratch[j] += scratch[(size_t)ch * 2 * d + j];
    for (int j = 0; j < d; j++) dw[j] += scratch[j];
    free(scratch);
}

// RoPE, rotate-half convention, in place on x (B, S, H, hd) = (N, d), with the tables cosines and
// sines (max_seq_len, hd/2): row p is position p. Inside each head, element
// i pairs with i + hd/2 and the pair is rotated by the angle pos * theta^(-2i/hd):
//   x'[i]      = x[i] cos - x[i+half] sin
//   x'[i+half] = x[i+half] cos + x[i] sin
// The backward is the inverse rotation (the transpose of a rotation): apply with sign = -1.
static void rope_row(real *x, const real *c, const real *s, int H, int hd, int sign) {
    int half = hd / 2;
    for (int h = 0; h < H; h++) {
        real *v = x + h * hd;
        for (int i = 0; i < half; i++) {
            real a = v[i], b = v[i + half], sn = sign * s[i];
            v[i] = a * c[i] - b * sn;
            v[i + half] = b * c[i] + a * sn;
        }
    }
}

void rope_apply(real *x, const real *cosines, const real *sines, int B, int S, int d, int H, int sign) {
    int hd = d / H, half = hd / 2;
    if ((size_t)B * S * d < PARALLEL_MIN_VALUES) {
        for (int n = 0; n < B * S; n++)
            rope_row(x + (size_t)n * d, cosines + (size_t)(n % S) * half, sines + (size_t)(n % S) * half, H, hd, sign);
        return;
    }
    #pragma omp parallel for
    for (int n = 0; n < B * S; n++)   // row n is position n % S of its sequence
        rope_row(x + (size_t)n * d, cosines + (size_t)(n % S) * half, sines + (size_t)(n % S) * half, H, hd, sign);
}

// Causal self-attention for one (batch, head) pair. q, k, v, y are (S, hd) slices with row
// stride d; scores is (S, S) scratch.
//   scores = scale * q k^T, masked to j <= i;  P = softmax over j;  y = P v
// Only lse (the log-sum-exp of each row, (S)) is saved: backward rebuilds P from it, so memory
// grows with S, not S^2.
//
// The products go straight to matmul's macro-kernel. With K = hd = 32 or so, each packed value
// feeds only a few FLOPs, so packing is the cost to save: every operand that plays B is packed
// once per head (k^T for q k^T, v for P v, ...) and used by all blocks; every A is read in place
// (but a partial last sliver, which head_product copies with zero padding).
// Causal blocks: half of the S x S square is masked, so it is not computed. The queries go in
// blocks of ATT_BLOCK rows; the block of rows i0..i1-1 sees keys 0..i1-1, so its products are
// (rows, i1) instead of (rows, S). Only the upper triangle of the diagonal block is computed and
// then zeroed: with S = 256 and blocks of 48 rows, 59% of the square is computed (50% is the
// causal half). Smaller blocks waste less but run shorter loops: 12 to 48 rows measured alike,
// and 48 rows make whole 6 x 16 tiles.
#define ATT_BLOCK 48

// Packed operands of one head: (S rounded up to NR) x hd for a transposed one (k^T, v^T: slivers
// of NR keys, hd deep), (hd rounded up to NR) x S for a plain one (v, k, dy, q: slivers of NR of
// the hd columns, S deep); and room for one A sliver (MR rows, as deep as the deepest product:
// S for P v, hd for q k^T).
static size_t head_panel_size(int S, int hd, int transposed) {
    return transposed ? (size_t)round_up(S, NR) * hd : (size_t)round_up(hd, NR) * S;
}

static size_t head_scratch_size(int S, int hd, int n_transposed, int n_plain) {
    return n_transposed * head_panel_size(S, hd, 1) + n_plain * head_panel_size(S, hd, 0) + (size_t)MR * max_int(S, hd);
}

// X (S, hd) with row stride d, packed as the B operand of a head's product: transposed = 1 for
// op(B) = X^T (slivers of NR rows of X), 0 for op(B) = X (slivers of NR columns of X).
static void pack_head(real *out, const real *X, int S, int d, int hd, int transposed) {
    if (transposed) pack_block(out, X, d, 0, S, hd, NR);
    else pack_block(out, X, d, 1, hd, S, NR);
}

// C (m, n) = op(A) (m, kp) · B (kp, n) for a block of a head. op(A) is read in place: its element
// (i, k) is A[i * rs + k * ks]. Bp points at row 0 of the block's part of a packed panel whose
// slivers are `sliver` values apart (so a product can start deeper than the panel: dy's rows
// j0.. are Bp = panel + j0 * NR). a_edge takes A's last sliver when m is not a multiple of MR.
static void head_product(real *C, int ldc, const real *A, size_t rs, size_t ks, const real *Bp,
                         size_t sliver, int m, int n, int kp, real *a_edge) {
    int full = m / MR * MR;
    if (full < m)
        for (int k = 0; k < kp; k++)
            for (int r = 0; r < MR; r++)
                a_edge[(size_t)k * MR + r] = full + r < m ? A[(full + r) * rs + k * ks] : 0;
    for (int j = 0; j < n; j += NR)
        macro_kernel(m, min_int(NR, n - j), kp, a_edge, A, rs, ks, Bp + (size_t)(j / NR) * sliver, C + j, ldc, 0);
}

// scratch holds head_scratch_size(S, hd, 1, 1) values.
void attention_head_forward(real *y, real *lse, real *scores, real *scratch, const real *q,
                            const real *k, const real *v, int S, int d, int hd) {
    real scale = 1 / sqrt((real)hd);
    real *kT = scratch, *vB = kT + head_panel_size(S, hd, 1), *a_edge = vB + head_panel_size(S, hd, 0);
    size_t sliver_kT = (size_t)NR * hd, sliver_vB = (size_t)NR * S;
    pack_head(kT, k, S, d, hd, 1);
    pack_head(vB, v, S, d, hd, 0);
    for (int i0 = 0; i0 < S; i0 += ATT_BLOCK) {
        int rows = min_int(ATT_BLOCK, S - i0), keys = i0 + rows;
        real *P = scores + (size_t)i0 * S;  // rows i0.., row stride S
        head_product(P, S, q + (size_t)i0 * d, d, 1, kT, sliver_kT, rows, keys, hd, a_edge);
        for (int i = i0; i < i0 + rows; i++) {
            real *row = P + (size_t)(i - i0) * S;
            real mx = scale * max_value(row, i + 1);  // scale > 0
            real sum = softmax_exp(row, i + 1, scale, mx), inv = 1 / sum;
            for (int j = 0; j <= i; j++) row[j] *= inv;
            for (int j = i + 1; j < keys; j++) row[j] = 0;
            lse[i] = mx + log(sum);
        }
        head_product(y + (size_t)i0 * d, d, P, S, 1, vB, sliver_vB, rows, hd, keys, a_edge);
    }
}

// Backward of attention_head_forward. Writes dq, dk, dv (S, hd slices, row stride d); P and dP are
// (S, S) scratch (the probabilities and their gradient), lse (S) as the forward saved it.
//   P = exp(scale * q k^T - lse)   (recomputed; 0 above the diagonal)
//   dv = P^T dy        dP = dy v^T
//   softmax backward:  ds_ij = P_ij (dP_ij - sum_k P_ik dP_ik)
//   scores = scale q k^T, so:  dq = scale ds k,  dk = scale ds^T q
// P and ds are built by query blocks, as in the forward (with dq, which needs whole rows); then
// dv and dk go by key blocks: keys j0..j1-1 are seen by the queries j0..S-1 only.
// scratch holds head_scratch_size(S, hd, 2, 3) values.
void attention_head_backward(real *dq, real *dk, real *dv, real *P, real *dP, real *scratch,
                             const real *dy, const real *q, const real *k, const real *v,
                             const real *lse, int S, int d, int hd) {
    real scale = 1 / sqrt((real)hd);
    size_t size_T = head_panel_size(S, hd, 1), size_B = head_panel_size(S, hd, 0);
    real *kT = scratch, *vT = kT + size_T, *kB = vT + size_T, *dyB = kB + size_B, *qB = dyB + size_B;
    real *a_edge = qB + size_B;
    size_t sliver_T = (size_t)NR * hd, sliver_B = (size_t)NR * S;
    pack_head(kT, k, S, d, hd, 1);
    pack_head(vT, v, S, d, hd, 1);
    pack_head(kB, k, S, d, hd, 0);
    pack_head(dyB, dy, S, d, hd, 0);
    pack_head(qB, q, S, d, hd, 0);
    for (int i0 = 0; i0 < S; i0 += ATT_BLOCK) {
        int rows = min_int(ATT_BLOCK, S - i0), keys = i0 + rows;
        real *Pb = P + (size_t)i0 * S, *dPb = dP + (size_t)i0 * S;
        head_product(Pb, S, q + (size_t)i0 * d, d, 1, kT, sliver_T, rows, keys, hd, a_edge);
        head_product(dPb, S, dy + (size_t)i0 * d, d, 1, vT, sliver_T, rows, keys, hd, a_edge);
        for (int i = i0; i < i0 + rows; i++) {
            real *p = Pb + (size_t)(i - i0) * S, *dp = dPb + (size_t)(i - i0) * S;
            softmax_exp(p, i + 1, scale, lse[i]);
            real dot = inner_product(p, dp, i + 1);
            for (int j = 0; j <= i; j++) dp[j] = scale * p[j] * (dp[j] - dot);
            for (int j = i + 1; j < keys; j++) p[j] = dp[j] = 0;
        }
        head_product(dq + (size_t)i0 * d, d, dPb, S, 1, kB, sliver_B, rows, hd, keys, a_edge);
    }
    // op(A) = P^T (or ds^T) restricted to keys j0.. and queries j0..: element (r, i) is
    // P[(j0 + i) * S + j0 + r], i.e. in place with rs = 1, ks = S
    for (int j0 = 0; j0 < S; j0 += ATT_BLOCK) {
        int cols = min_int(ATT_BLOCK, S - j0);
        size_t at = (size_t)j0 * S + j0;
        head_product(dv + (size_t)j0 * d, d, P + at, 1, S, dyB + (size_t)j0 * NR, sliver_B, cols, hd, S - j0, a_edge);
        head_product(dk + (size_t)j0 * d, d, dP + at, 1, S, qB + (size_t)j0 * NR, sliver_B, cols, hd, S - j0, a_edge);
    }
}

// Multi-head causal attention over the batch: y (N, d) from q, k, v (N, d), lse (B, H, S).
// Parallel over batch x head; scratch holds a (2, S, S) pair per thread (the backward's P and dP;
// the forward uses the first for its scores), and each thread has its own buffer for the packed
// operands of its head. Heads are handed out dynamically, as matmul's blocks are, so a thread
// slowed by another program takes fewer (2 threads: 0.96x the time); a head's result does not
// depend on which thread computes it.
void attention_forward(real *y, real *lse, real *scratch, const real *q, const real *k,
                       const real *v, int B, int S, int d, int H, int n_threads) {
    int hd = d / H;
    (void)n_threads;  // read only by the pragma (ignored without OpenMP)
    #pragma omp parallel num_threads(n_threads)
    {
        real *packed = alloc_panel(head_scratch_size(S, hd, 1, 1));
        #pragma omp for schedule(dynamic)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            size_t off = (size_t)b * S * d + (size_t)h * hd;
            attention_head_forward(y + off, lse + (size_t)bh * S, scratch + (size_t)thread_id() * 2 * S * S,
                                   packed, q + off, k + off, v + off, S, d, hd);
        }
        free(packed);
    }
}

// Backward of attention_forward: dq, dk, dv (N, d) from dy (N, d), overwritten (not added to);
// scratch as above.
void attention_backward(real *dq, real *dk, real *dv, real *scratch, const real *dy,
                        const real *q, const real *k, const real *v, const real *lse,
                        int B, int S, int d, int H, int n_threads) {
    int hd = d / H;
    (void)n_threads;  // read only by the pragma (ignored without OpenMP)
    #pragma omp parallel num_threads(n_threads)
    {
        real *packed = alloc_panel(head_scratch_size(S, hd, 2, 3));
        #pragma omp for schedule(dynamic)
        for (int bh = 0; bh < B * H; bh++) {
            int b = bh / H, h = bh % H;
            size_t off = (size_t)b * S * d + (size_t)h * hd;
            real *P = scratch + (size_t)thread_id() * 2 * S * S, *dP = P + (size_t)S * S;
            attention_head_backward(dq + off, dk + off, dv + off, P, dP, packed, dy + off, q + off,
                                    k + off, v + off, lse + (size_t)bh * S, S, d, hd);
        }
        free(packed);
    }
}

// SwiGLU activation: act = silu(gate) * up, silu(g) = g * sigmoid(g)        all (N, F)
static inline real swiglu(real g, real u) { return g / (1 + fast_exp(-g)) * u; }

void swiglu_forward(real *act, const real *gate, const real *up, size_t n) {
    if (n < PARALLEL_MIN_VALUES) {
        for (size_t i = 0; i < n; i++) act[i] = swiglu(gate[i], up[i]);
        return;
    }
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) act[i] = swiglu(gate[i], up[i]);
}

// d silu(g)/dg = s + g s (1 - s) with s = sigmoid(g), so
//   dgate = dact * up * s (1 + g (1 - s)),   dup = dact * silu(g)
void swiglu_backward(real *dgate, real *dup, const real *dact, const real *gate, const real *up, size_t n) {
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        real g = gate[i], s = 1 / (1 + fast_exp(-g));
        dgate[i] = dact[i] * up[i] * s * (1 + g * (1 - s));
        dup[i] = dact[i] * g * s;
    }
}

// out (N, d) = embed[tokens]; backward adds each row's gradient into its token's row.
void embedding_forward(real *out, const int *tokens, const real *embed, int N, int d) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * d, embed + (size_t)tokens[n] * d, d * sizeof(real));
}

void embedding_backward(real *dembed, const real *dout, const int *tokens, int N, int d) {
    for (int n = 0; n < N; n++)  // serial: two tokens may share a row
        for (int j = 0; j < d; j++) dembed[(size_t)tokens[n] * d + j] += dout[(size_t)n * d + j];
}

// Residual add with a fresh output: out = a + b  (n elements)
void residual_forward(real *out, const real *a, const real *b, size_t n) {
    if (n < PARALLEL_MIN_VALUES) {
        for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
        return;
    }
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

// ----------------------------------------------------------------------------
// 4. the LoopLM read-outs

// log(sigmoid(z)) = -softplus(-z), written so that neither branch overflows.
real log_sigmoid(real z) { return z >= 0 ? -log1p(exp(-z)) : z - log1p(exp(z)); }
real sigmoid(real z) { return 1 / (1 + exp(-z)); }

// LM head and cross-entropy of one step. logits (N, V) = h (N, d) @ head^T; then for each token
//   ce[n] = logsumexp(logits[n]) - logits[n][target[n]]
// When dce is given (training), the gradient is formed right here, while the logits exist:
//   dlogits[n] = dce[n] * (softmax(logits[n]) - onehot(target[n]))
//   dh (N, d) = dlogits @ head          dhead += dlogits^T @ h
// This is possible because dLoss/dCE_t = p(t)/N is known before the logits: p comes from the exit
// gate, which reads h, not the logits. So B*S*V*T logits never exist at once: the tokens go in
// chunks of HEAD_ROWS, and logits (HEAD_ROWS, V) is reused by every chunk of every step. A chunk's
// logits are read by four passes (matmul, softmax, the two products of the gradient) while they
// are still in cache (L3 at V = 4096: 8 MiB), and the buffer does not grow with N. dhead sums the chunks in order, the same
// for any thread count. Each chunk packs the whole head matrix twice (as B of the forward and of
// dh), so larger chunks pack it less often: 512 rows ran the head +9% faster than 256 on two
// threads (V 4096, d 256), 1024 no faster than 512; the buffer is 8 MiB at V = 4096.
#define HEAD_ROWS 512

void lm_head_forward(real *ce, real *dh, real *dhead, real *logits, const real *h, const real *head,
                            const int *targets, const real *dce, int N, int d, int V) {
    for (int n0 = 0; n0 < N; n0 += HEAD_ROWS) {
        int rows = min_int(HEAD_ROWS, N - n0);
        const real *hc = h + (size_t)n0 * d;
        linear_forward(logits, hc, head, rows, d, V);
        #pragma omp parallel for
        for (int n = n0; n < n0 + rows; n++) {
            real *row = logits + (size_t)(n - n0) * V, mx = max_value(row, V), target_logit = row[targets[n]];
            real sum = softmax_exp(row, V, 1, mx);
            ce[n] = mx + log(sum) - target_logit;
            if (dce) {
                real scale = dce[n] / sum;
                for (int j = 0; j < V; j++) row[j] *= scale;
                row[targets[n]] -= dce[n];
            }
        }
        if (dce) linear_backward(dh + (size_t)n0 * d, dhead, logits, hc, head, rows, d, V, 0);
    }
}

// Exit gate logit, one scalar per token: z (N) = h (N, d) . w (d) + b.
static real exit_gate_row(const real *h, const real *w, real b, int d) {
    real s = b;
    for (int j = 0; j < d; j++) s += h[j] * w[j];
    return s;
}

void exit_gate_forward(real *z, const real *h, const real *w, const real *b, int N, int d) {
    if ((size_t)N * d < PARALLEL_MIN_VALUES) {
        for (int n = 0; n < N; n++) z[n] = exit_gate_row(h + (size_t)n * d, w, b[0], d);
        return;
    }
    #pragma omp parallel for
    for (int n = 0; n < N; n++) z[n] = exit_gate_row(h + (size_t)n * d, w, b[0], d);
}

// Given dz (N): dh += dz w (when dh is given), dw += sum_n dz h, db += sum_n dz.
void exit_gate_backward(real *dh, real *dw, real *db, const real *dz, const real *h,
                               const real *w, int N, int d) {
    if (dh) {
        #pragma omp parallel for
        for (int n = 0; n < N; n++)
            for (int j = 0; j < d; j++) dh[(size_t)n * d + j] += dz[n] * w[j];
    }
    #pragma omp parallel for
    for (int j = 0; j < d; j++) {
        real s = 0;
        for (int n = 0; n < N; n++) s += dz[n] * h[(size_t)n * d + j];
        dw[j] += s;
    }
    real sb = 0;
    for (int n = 0; n < N; n++) sb += dz[n];
    db[0] += sb;
}

// The exit distribution of each token from its gate logits z (T, N), in log space:
//   log p(t) = logsigmoid(z_t) + sum_{j<t} logsigmoid(-z_j)      t = 1..T-1
//   log p(T) = sum_{j<T} logsigmoid(-z_j)                         (lambda_T is not used)
// i.e. p(t) = lambda_t prod_{j<t} (1 - lambda_j), lambda = sigmoid(z). Writes log_p, p (T, N).
void exit_distribution_forward(real *log_p, real *p, const real *z, int T, int N) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        real log_survive = 0;  // log prod_{j<t} (1 - lambda_j)
        for (int t = 0; t < T - 1; t++) {
            log_p[(size_t)t * N + n] = log_sigmoid(z[(size_t)t * N + n]) + log_survive;
            log_survive += log_sigmoid(-z[(size_t)t * N + n]);
        }
        log_p[(size_t)(T - 1) * N + n] = log_survive;
        for (int t = 0; t < T; t++) p[(size_t)t * N + n] = exp(log_p[(size_t)t * N + n]);
    }
}

// Backward of the exit distribution. Given g_t = dLoss/d(log p(t)) (T, N), writes dz (T, N).
// From the forward, d log p(t)/d z_t = 1 - lambda_t (t < T) and d log p(t)/d z_j = -lambda_j
// for every j < t, hence
//   dz_j = g_j (1 - lambda_j) - lambda_j sum_{t>j} g_t         and dz_T = 0.
void exit_distribution_backward(real *dz, const real *g, const real *z, int T, int N) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        real later = 0;  // sum_{t>j} g_t, built from the back
        dz[(size_t)(T - 1) * N + n] = 0;
        later += g[(size_t)(T - 1) * N + n];
        for (int j = T - 2; j >= 0; j--) {
            real lambda = sigmoid(z[(size_t)j * N + n]), gj = g[(size_t)j * N + n];
            dz[(size_t)j * N + n] = gj * (1 - lambda) - lambda * later;
            later += gj;
        }
    }
}

// Stage I loss of each token and its gradients (LOOPLM.md §3):
//   loss(n) = sum_t p(t) CE_t - beta H(p) = sum_t p(t) (CE_t + beta log p(t))
// Its derivatives, scaled by 1/N for the mean over tokens:
//   dLoss/dCE_t      = p(t) / N                                   (formed before the LM head)
//   dLoss/dlog p(t)  = p(t) (CE_t + beta log p(t) + beta) / N      (d p/d log p = p)
// Writes loss_tok (N) and, when given, dlogp (T, N). With beta = 0 this is the expected CE; the
// difference between the two is exactly beta * H.
void stage1_loss(real *loss_tok, real *dlogp, const real *ce, const real *log_p,
                        const real *p, real beta, int T, int N) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        real loss = 0;
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)t * N + n;
            loss += p[i] * (ce[i] + beta * log_p[i]);
            if (dlogp) dlogp[i] = p[i] * (ce[i] + beta * log_p[i] + beta) / N;
        }
        loss_tok[n] = loss;
    }
}

// Stage II: the gate alone learns to stop where one more step stops helping (LOOPLM.md §3).
// With CE treated as constants, for t = 2..T (index t-1 below):
//   I_t = max(0, CE_{t-1} - CE_t)             w_t = sigmoid(k (I_t - gamma))  ("continue")
//   loss = (1/T) sum_t mean_n -( w_t log(1 - lambda_t) + (1 - w_t) log lambda_t )
// (1/T as printed in the paper, though the sum has T-1 terms; lambda_t is paired with the
// improvement that step t brought, as printed.) It is a binary cross-entropy with target
// 1 - w_t for lambda_t, so  dLoss/dz_t = (lambda_t - (1 - w_t)) / (T N).
// Writes loss_tok (N) and dz (T, N) when given (dz for t = 1 is 0).
void stage2_loss(real *loss_tok, real *dz, const real *ce, const real *z, real k, real gamma,
                        int T, int N) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        real loss = 0;
        if (dz) dz[n] = 0;
        for (int t = 1; t < T; t++) {
            size_t i = (size_t)t * N + n;
            real improvement = fmax(ce[i - N] - ce[i], 0);
            real w = sigmoid(k * (improvement - gamma)), zt = z[i];
            loss -= (w * log_sigmoid(-zt) + (1 - w) * log_sigmoid(zt)) / T;
            if (dz) dz[i] = (sigmoid(zt) - (1 - w)) / ((real)T * N);
        }
        loss_tok[n] = loss;
    }
}

// ----------------------------------------------------------------------------
// 5. activations
//
// Everything the backward pass reads, for one batch, in one allocation. Per-layer activations
// have a leading step dimension, (T, L): the same weights run T times, but each step has its own
// inputs, so each step keeps its own copy. Evaluation may run up to 2T steps (extrapolation);
// steps beyond T reuse the slots of step t mod T, which is safe because nothing reads them back.
//
// Activation memory, in reals per token (N = B*S tokens; the logits buffer is shared):
//   T * [ L * (10 d + 3 F + H + 4)      layer activations at every step
//         + d + 5 ]                     dh_head; log_p, p, dce, dlogp, dz
//   + 2T * (d + 3)                      h; rstd_h, z, ce at up to 2T steps
//   + V R / N + 11 d + 3 F + 2          logits of one chunk of R = min(N, HEAD_ROWS) tokens, emb,
//                                       one layer's backward scratch, losses
// plus 2 S^2 per thread for attention scores (2 S / B per token). acts_bytes_per_token()
// measures the layout itself (the block is then rounded up to whole 2 MiB pages). Not counted:
// the short-lived buffers freed when their call returns: matmul's packing (two B panels of up to
// 4 MiB, and a 288 KiB A block per thread), attention's (~5 S hd per thread) and
// rmsnorm_backward's per-chunk sums (d/16 per token).

struct LayerActs {
    real *xa;          // (N, d) norm_attn_pre(x), the attention input
    real *rstd_xa;     // (N)
    real *q, *k, *v;   // (N, d) projections, q and k after RoPE; head h is columns h*hd..(h+1)*hd-1
    real *lse;         // (B, H, S) log-sum-exp of each attention row (backward rebuilds P from it)
    real *att;         // (N, d) attention output, heads side by side
    real *att_proj;    // (N, d) att @ wo^T, before norm_attn_post
    real *rstd_att;    // (N)
    real *x_mid;       // (N, d) x + norm_attn_post(att_proj)
    real *xm;          // (N, d) norm_mlp_pre(x_mid), the MLP input
    real *rstd_xm;     // (N)
    real *gate, *up;   // (N, F) xm @ mlp_gate^T, xm @ mlp_up^T
    real *act;         // (N, F) silu(gate) * up
    real *mlp_proj;    // (N, d) act @ mlp_down^T, before norm_mlp_post
    real *rstd_mlp;    // (N)
    real *out;         // (N, d) x_mid + norm_mlp_post(mlp_proj): the layer's output
};

struct Acts {
    LayerActs *layer;  // (T, L) layer[t * L + l]
    real *emb;         // (N, d) token embeddings: the input of step 1
    real *h;           // (2T, N, d) the normed stream after each step: read-out and next step's input
    real *rstd_h;      // (2T, N)
    real *z;           // (2T, N) exit-gate logits
    real *ce;          // (2T, N) cross-entropy at each step
    real *log_p, *p;   // (T, N) exit distribution
    real *loss1, *loss2; // (N) Stage I and Stage II loss of each token
    real *dce;         // (T, N) dLoss/dCE_t (Stage I)
    real *dlogp;       // (T, N) dLoss/dlog p(t)
    real *dz;          // (T, N) dLoss/dz_t
    real *dh_head;     // (T, N, d) gradient into h_t through the LM head, formed in the forward
    real *logits;      // (min(N, HEAD_ROWS), V) logits (then dlogits) of one chunk of tokens
    real *attn_scratch;  // (threads, 2, S, S) scores and their gradient, one pair per thread
    int attn_threads;
    // backward scratch, reused by every layer and step
    real *dres, *dres2;  // (N, d) gradient of the residual stream, ping-pong
    real *dmlp_proj, *dxm, *datt_proj, *datt, *dq, *dk, *dv, *dxa;  // (N, d)
    real *dact, *dgate, *dup;  // (N, F)
};

// Carves consecutive tensors out of one block. With base == NULL it only counts, so the same
// layout function first sizes the block and then, once allocated, hands out the pointers.
typedef struct { real *base; size_t used; int overflow; } Carver;

real *carve(Carver *cv, size_t rows, size_t cols) {
    size_t n;
    if (size_mul(rows, cols, &n) || size_add(cv->used, n, &cv->used)) { cv->overflow = 1; return NULL; }
    return cv->base ? cv->base + (cv->used - n) : NULL;
}

void acts_layout(Acts *a, Carver *cv, const Config *c, size_t N, size_t S, int threads) {
    size_t d = c->d, F = c->F, T = c->T;
    for (int i = 0; i < c->T * c->L; i++) {
        LayerActs *la = &a->layer[i];
        la->xa = carve(cv, N, d);       la->rstd_xa = carve(cv, N, 1);
        la->q = carve(cv, N, d);        la->k = carve(cv, N, d);        la->v = carve(cv, N, d);
        la->lse = carve(cv, N, c->H);   la->att = carve(cv, N, d);
        la->att_proj = carve(cv, N, d); la->rstd_att = carve(cv, N, 1); la->x_mid = carve(cv, N, d);
        la->xm = carve(cv, N, d);       la->rstd_xm = carve(cv, N, 1);
        la->gate = carve(cv, N, F);     la->up = carve(cv, N, F);       la->act = carve(cv, N, F);
        la->mlp_proj = carve(cv, N, d); la->rstd_mlp = carve(cv, N, 1); la->out = carve(cv, N, d);
    }
    a->emb = carve(cv, N, d);
    a->h = carve(cv, 2 * T * N, d);  a->rstd_h = carve(cv, 2 * T, N);
    a->z = carve(cv, 2 * T, N);      a->ce = carve(cv, 2 * T, N);
    a->log_p = carve(cv, T, N);      a->p = carve(cv, T, N);
    a->loss1 = carve(cv, N, 1);      a->loss2 = carve(cv, N, 1);
    a->dce = carve(cv, T, N);        a->dlogp = carve(cv, T, N);     a->dz = carve(cv, T, N);
    a->dh_head = carve(cv, T * N, d);
    a->logits = carve(cv, N < HEAD_ROWS ? N : HEAD_ROWS, c->V);
    a->attn_scratch = carve(cv, (size_t)threads * 2 * S, S);
    a->attn_threads = threads;
    real **scratch_d[] = {&a->dres, &a->dres2, &a->dmlp_proj, &a->dxm, &a->datt_proj, &a->datt,
                          &a->dq, &a->dk, &a->dv, &a->dxa};
    for (size_t i = 0; i < sizeof scratch_d / sizeof *scratch_d; i++) *scratch_d[i] = carve(cv, N, d);
    a->dact = carve(cv, N, F);  a->dgate = carve(cv, N, F);  a->dup = carve(cv, N, F);
}

// Activation bytes per token for batches of S-token sequences (the formula above, measured from
// the layout itself), for one thread of attention scratch.
double acts_bytes_per_token(const Config *c, int B, int S) {
    Acts a;
    a.layer = xcalloc((size_t)c->T * c->L, sizeof(LayerActs));
    Carver cv = {0};
    acts_layout(&a, &cv, c, (size_t)B * S, (size_t)S, 1);
    free(a.layer);
    return (double)cv.used * sizeof(real) / ((double)B * S);
}

void acts_free(Ouro *m) {
    if (m->acts) free(m->acts->layer);
    free(m->acts);
    free(m->acts_memory);
    free(m->inputs);
    free(m->targets);
    m->acts = NULL;
    m->acts_memory = NULL;
    m->inputs = m->targets = NULL;
    m->batch_cap = m->seq_cap = 0;
}

// Makes room for B sequences of S tokens (kept when the current block is large enough).
int acts_reserve(Ouro *m, int B, int S) {
    if (m->acts && B <= m->batch_cap && S <= m->seq_cap) return 0;
    acts_free(m);
    size_t N = (size_t)B * S;
    int threads = max_threads();
    m->acts = xcalloc(1, sizeof(Acts));
    m->acts->layer = xcalloc((size_t)m->cfg.T * m->cfg.L, sizeof(LayerActs));
    Carver cv = {0};
    acts_layout(m->acts, &cv, &m->cfg, N, (size_t)S, threads);
    if (cv.overflow || cv.used > SIZE_MAX / sizeof(real))
        return fail("activations", "batch %d x %d needs more memory than size_t can address", B, S);
    // the largest allocation by far, read with strides (packing takes 6 or 16 values from each
    // of many rows, attention hd values from each row of a head): in 2 MiB pages (xmalloc_huge)
    m->acts_memory = xmalloc_huge(cv.used * sizeof(real));
    cv = (Carver){.base = m->acts_memory};
    acts_layout(m->acts, &cv, &m->cfg, N, (size_t)S, threads);
    m->inputs = xmalloc(N * sizeof(int));
    m->targets = xmalloc(N * sizeof(int));
    m->batch_cap = B;
    m->seq_cap = S;
    return 0;
}

LayerActs *layer_acts(Ouro *m, int t, int l) {
    return &m->acts->layer[(t % m->cfg.T) * m->cfg.L + l];
}

// Step t's read-out h_t (N, d) = the input of step t+1.
real *step_h(Ouro *m, int t) { return m->acts->h + (size_t)t * m->B * m->S * m->cfg.d; }

// The input of layer l at step t: the embedding, the previous step's h, or the previous layer's out.
real *layer_input(Ouro *m, int t, int l) {
    if (l > 0) return layer_acts(m, t, l - 1)->out;
    return t == 0 ? m->acts->emb : step_h(m, t - 1);
}

// ----------------------------------------------------------------------------
// 6. forward and backward

// One sandwich layer (LOOPLM.md §1) at step t:
//   x_mid = x + norm_attn_post( wo( attention( rope(wq xa), rope(wk xa), wv xa ) ) ),  xa = norm_attn_pre(x)
//   out   = x_mid + norm_mlp_post( mlp_down( silu(mlp_gate xm) * mlp_up xm ) ),      xm = norm_mlp_pre(x_mid)
void layer_forward(Ouro *m, int t, int l) {
    const Config *c = &m->cfg;
    const Params *p = &m->params;
    int B = m->B, S = m->S, N = B * S, d = c->d, F = c->F;
    size_t dd = (size_t)d * d, Fd = (size_t)F * d;
    LayerActs *a = layer_acts(m, t, l);
    const real *x = layer_input(m, t, l);

    rmsnorm_forward(a->xa, a->rstd_xa, x, p->norm_attn_pre + l * d, N, d, c->norm_eps);
    linear_forward(a->q, a->xa, p->wq + l * dd, N, d, d);
    linear_forward(a->k, a->xa, p->wk + l * dd, N, d, d);
    linear_forward(a->v, a->xa, p->wv + l * dd, N, d, d);
    rope_apply(a->q, m->rope_cos, m->rope_sin, B, S, d, c->H, +1);
    rope_apply(a->k, m->rope_cos, m->rope_sin, B, S, d, c->H, +1);
    attention_forward(a->att, a->lse, m->acts->attn_scratch, a->q, a->k, a->v, B, S, d, c->H, m->acts->attn_threads);
    linear_forward(a->att_proj, a->att, p->wo + l * dd, N, d, d);
    rmsnorm_forward(a->x_mid, a->rstd_att, a->att_proj, p->norm_attn_post + l * d, N, d, c->norm_eps);
    residual_forward(a->x_mid, x, a->x_mid, (size_t)N * d);

    rmsnorm_forward(a->xm, a->rstd_xm, a->x_mid, p->norm_mlp_pre + l * d, N, d, c->norm_eps);
    linear_forward(a->gate, a->xm, p->mlp_gate + l * Fd, N, d, F);
    linear_forward(a->up, a->xm, p->mlp_up + l * Fd, N, d, F);
    swiglu_forward(a->act, a->gate, a->up, (size_t)N * F);
    linear_forward(a->mlp_proj, a->act, p->mlp_down + l * Fd, N, F, d);
    rmsnorm_forward(a->out, a->rstd_mlp, a->mlp_proj, p->norm_mlp_post + l * d, N, d, c->norm_eps);
    residual_forward(a->out, a->x_mid, a->out, (size_t)N * d);
}

// Backward of layer_forward. On entry acts->dres holds dLoss/d out; on return dLoss/d x.
// The residual connections pass dres through unchanged; each sub-block adds its part.
void layer_backward(Ouro *m, int t, int l) {
    const Config *c = &m->cfg;
    const Params *p = &m->params;
    Params *g = &m->grads;
    Acts *s = m->acts;
    int B = m->B, S = m->S, N = B * S, d = c->d, F = c->F;
    size_t dd = (size_t)d * d, Fd = (size_t)F * d;
    LayerActs *a = layer_acts(m, t, l);
    const real *x = layer_input(m, t, l);

    // MLP half: out = x_mid + norm_mlp_post(mlp_proj), so d x_mid = d out + (path through the MLP)
    rmsnorm_backward(s->dmlp_proj, g->norm_mlp_post + l * d, s->dres, a->mlp_proj, p->norm_mlp_post + l * d, a->rstd_mlp, N, d, 0);
    linear_backward(s->dact, g->mlp_down + l * Fd, s->dmlp_proj, a->act, p->mlp_down + l * Fd, N, F, d, 0);
    swiglu_backward(s->dgate, s->dup, s->dact, a->gate, a->up, (size_t)N * F);
    linear_backward(s->dxm, g->mlp_gate + l * Fd, s->dgate, a->xm, p->mlp_gate + l * Fd, N, d, F, 0);
    linear_backward(s->dxm, g->mlp_up + l * Fd, s->dup, a->xm, p->mlp_up + l * Fd, N, d, F, 1);
    rmsnorm_backward(s->dres, g->norm_mlp_pre + l * d, s->dxm, a->x_mid, p->norm_mlp_pre + l * d, a->rstd_xm, N, d, 1);

    // attention half: x_mid = x + norm_attn_post(att_proj); dres now holds d x_mid
    rmsnorm_backward(s->datt_proj, g->norm_attn_post + l * d, s->dres, a->att_proj, p->norm_attn_post + l * d, a->rstd_att, N, d, 0);
    linear_backward(s->datt, g->wo + l * dd, s->datt_proj, a->att, p->wo + l * dd, N, d, d, 0);
    attention_backward(s->dq, s->dk, s->dv, s->attn_scratch, s->datt, a->q, a->k, a->v, a->lse, B, S, d, c->H, s->attn_threads);
    rope_apply(s->dq, m->rope_cos, m->rope_sin, B, S, d, c->H, -1);  // gradients w.r.t. q, k before RoPE
    rope_apply(s->dk, m->rope_cos, m->rope_sin, B, S, d, c->H, -1);
    linear_backward(s->dxa, g->wq + l * dd, s->dq, a->xa, p->wq + l * dd, N, d, d, 0);
    linear_backward(s->dxa, g->wk + l * dd, s->dk, a->xa, p->wk + l * dd, N, d, d, 1);
    linear_backward(s->dxa, g->wv + l * dd, s->dv, a->xa, p->wv + l * dd, N, d, d, 1);
    rmsnorm_backward(s->dres, g->norm_attn_pre + l * d, s->dxa, x, p->norm_attn_pre + l * d, a->rstd_xa, N, d, 1);
}

// After the L layers of step t: h_t = norm_final(stream), the exit-gate logit z_t = h_t . w + b.
// (The LM head reads h_t later, once the exit distribution is known.)
void readout_forward(Ouro *m, int t) {
    const Config *c = &m->cfg;
    int N = m->B * m->S;
    real *h = step_h(m, t);
    rmsnorm_forward(h, m->acts->rstd_h + (size_t)t * N, layer_acts(m, t, c->L - 1)->out,
                    m->params.norm_final, N, c->d, c->norm_eps);
    exit_gate_forward(m->acts->z + (size_t)t * N, h, m->params.exit_w, m->params.exit_b, N, c->d);
}

// Backward of step t's read-outs. On entry dres holds dLoss/dh_t through step t+1; the LM head
// (dh_head, formed in the forward) and the exit gate (dz_t) add theirs; then the final norm.
// On return dres holds dLoss/d(stream) before the norm, i.e. d out of the last layer.
void readout_backward(Ouro *m, int t) {
    const Config *c = &m->cfg;
    Acts *s = m->acts;
    int N = m->B * m->S, d = c->d;
    size_t Nd = (size_t)N * d;
    real *h = step_h(m, t), *dh_head = s->dh_head + (size_t)t * Nd;
    #pragma omp parallel for
    for (size_t i = 0; i < Nd; i++) s->dres[i] += dh_head[i];
    exit_gate_backward(s->dres, m->grads.exit_w, m->grads.exit_b, s->dz + (size_t)t * N, h, m->params.exit_w, N, d);
    rmsnorm_backward(s->dres2, m->grads.norm_final, s->dres, layer_acts(m, t, c->L - 1)->out,
                     m->params.norm_final, s->rstd_h + (size_t)t * N, N, d, 0);
    real *tmp = s->dres; s->dres = s->dres2; s->dres2 = tmp;
}

void metrics_compute(Ouro *m);

// Forward pass over B sequences of S tokens (inputs, targets: (B, S) token ids) through n_steps
// recurrent steps (T <= n_steps <= 2T; beyond T is extrapolation, for evaluation).
//   OURO_EVAL   losses and metrics only
//   OURO_STAGE1 also keeps what ouro_backward needs and adds the LM head's gradients (see
//               lm_head_forward) into m->grads: call ouro_zero_grad first
//   OURO_STAGE2 also keeps what the gate's gradient needs
// targets may be NULL in OURO_EVAL (then only h and z are computed). Returns 0 or -1 (bad input).
int ouro_forward(Ouro *m, const int *inputs, const int *targets, int B, int S, int n_steps, OuroMode mode) {
    const Config *c = &m->cfg;
    int T = c->T, L = c->L, d = c->d;
    m->mode = OURO_EVAL;   // until this forward succeeds, there is no gradient to take
    if (B < 1 || S < 1 || S > c->max_seq_len)
        return fail("forward", "batch %d x %d: need B >= 1 and 1 <= S <= max_seq_len (%d)", B, S, c->max_seq_len);
    if (n_steps < T || n_steps > 2 * T || (mode != OURO_EVAL && n_steps != T))
        return fail("forward", "n_steps=%d: training runs T=%d steps, evaluation T..2T", n_steps, T);
    if (mode != OURO_EVAL && !targets) return fail("forward", "training needs targets");
    if ((size_t)B * S > (size_t)INT32_MAX / (c->V > c->d ? c->V : c->d))
        return fail("forward", "batch %d x %d is too large", B, S);
    size_t N = (size_t)B * S;
    for (size_t i = 0; i < N; i++)
        if (inputs[i] < 0 || inputs[i] >= c->V || (targets && (targets[i] < 0 || targets[i] >= c->V)))
            return fail("forward", "token id at position %zu is outside the vocabulary [0, %d)", i, c->V);
    if (acts_reserve(m, B, S)) return -1;
    if (mode != OURO_EVAL) ouro_alloc_training(m);
    Acts *a = m->acts;
    m->B = B; m->S = S; m->n_steps = n_steps; m->mode = mode;
    memcpy(m->inputs, inputs, N * sizeof(int));
    if (targets) memcpy(m->targets, targets, N * sizeof(int));

    embedding_forward(a->emb, m->inputs, m->params.embed, (int)N, d);
    for (int t = 0; t < n_steps; t++) {           // the same L layers, n_steps times (T in training)
        for (int l = 0; l < L; l++) layer_forward(m, t, l);
        readout_forward(m, t);                    // final norm -> h_t, exit gate -> z_t
    }
    if (!targets) return 0;

    exit_distribution_forward(a->log_p, a->p, a->z, T, (int)N);
    for (size_t i = 0; i < (size_t)T * N; i++) a->dce[i] = a->p[i] / N;  // dLoss/dCE_t, known already
    for (int t = 0; t < n_steps; t++) {          // LM head at every step (with its gradient in Stage I)
        int grad = mode == OURO_STAGE1 && t < T;
        lm_head_forward(a->ce + t * N, grad ? a->dh_head + t * N * d : NULL, m->grads.head, a->logits,
                        step_h(m, t), m->params.head, m->targets, grad ? a->dce + t * N : NULL, (int)N, d, c->V);
    }
    stage1_loss(a->loss1, mode == OURO_STAGE1 ? a->dlogp : NULL, a->ce, a->log_p, a->p, m->obj.beta, T, (int)N);
    stage2_loss(a->loss2, mode == OURO_STAGE2 ? a->dz : NULL, a->ce, a->z, m->obj.k, m->obj.gamma, T, (int)N);
    metrics_compute(m);
    return 0;
}

// Adds the gradient of the last forward's loss (Stage I or Stage II) into m->grads, once: a second
// call before the next forward fails, as does one after no forward, an OURO_EVAL one, or one that
// failed. Returns 0 or -1.
int ouro_backward(Ouro *m) {
    if (m->mode == OURO_EVAL)
        return fail("backward", "the last forward was not a successful Stage I or Stage II forward "
                    "(or its gradient was already taken)");
    m->grad_mode = m->mode;   // what ouro_adamw will step, whatever forwards come in between
    m->mode = OURO_EVAL;
    const Config *c = &m->cfg;
    Acts *a = m->acts;
    int T = c->T, L = c->L, N = m->B * m->S, d = c->d;
    if (m->grad_mode == OURO_STAGE2) {
        // Only the gate learns: z_t = h_t . w + b with h_t fixed, so no trunk backward at all.
        for (int t = 0; t < T; t++)
            exit_gate_backward(NULL, m->grads.exit_w, m->grads.exit_b, a->dz + (size_t)t * N, step_h(m, t),
                               m->params.exit_w, N, d);
        return 0;
    }
    exit_distribution_backward(a->dz, a->dlogp, a->z, T, N);
    memset(a->dres, 0, (size_t)N * d * sizeof(real));  // h_T feeds only its own read-outs
    for (int t = T - 1; t >= 0; t--) {            // mirror of the forward loop
        readout_backward(m, t);
        for (int l = L - 1; l >= 0; l--) layer_backward(m, t, l);
    }
    embedding_backward(m->grads.embed, a->dres, m->inputs, N, d);
    return 0;
}

// ----------------------------------------------------------------------------
// 7. metrics and Q-exit

void metrics_compute(Ouro *m) {
    const Acts *a = m->acts;
    int T = m->cfg.T, N = m->B * m->S;
    Metrics *r = &m->metrics;
    memset(r, 0, sizeof *r);
    r->n_steps = m->n_steps;
    // serial sums in double: the same numbers for any thread count
    for (int t = 0; t < m->n_steps; t++) {
        double s = 0;
        for (int n = 0; n < N; n++) s += a->ce[(size_t)t * N + n];
        r->ce[t] = s / N;
    }
    for (int n = 0; n < N; n++) {
        r->loss_stage1 += a->loss1[n];
        r->loss_stage2 += a->loss2[n];
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)t * N + n;
            r->p[t] += a->p[i];
            r->expected_ce += a->p[i] * a->ce[i];
            r->entropy -= a->p[i] * a->log_p[i];
            r->mean_exit_step += (t + 1) * a->p[i];
        }
    }
    r->loss_stage1 /= N; r->loss_stage2 /= N; r->expected_ce /= N; r->entropy /= N; r->mean_exit_step /= N;
    for (int t = 0; t < T; t++) r->p[t] /= N;
}

// Q-exit (LOOPLM.md §4): a token leaves after the first step n with CDF(n) >= q. Step T always
// ends it, and q = 1 always runs T steps (CDF(n) < 1 for n < T in exact arithmetic; rounding
// must not make it exit early).
int qexit_stop(double cdf, double q) { return q < 1 && cdf >= q; }

// For the last forward (with targets): the mean CE when each token is read at its Q-exit step,
// and the mean number of steps it ran (written to *mean_depth).
double ouro_qexit_ce(const Ouro *m, double q, double *mean_depth) {
    const Acts *a = m->acts;
    int T = m->cfg.T, N = m->B * m->S;
    double ce = 0, depth = 0;
    for (int n = 0; n < N; n++) {
        double cdf = 0;
        int t = 0;
        for (; t < T - 1; t++) {
            cdf += a->p[(size_t)t * N + n];
            if (qexit_stop(cdf, q)) break;
        }
        ce += a->ce[(size_t)t * N + n];
        depth += t + 1;
    }
    *mean_depth = depth / N;
    return ce / N;
}

// ----------------------------------------------------------------------------
// 8. AdamW and gradient clipping

// In Stage II only the gate is trained; everything else stays exactly as it was (no decay).
int tensor_trainable(OuroMode mode, int i) {
    return mode != OURO_STAGE2 || i == P_EXIT_W || i == P_EXIT_B;
}

// Sum of squares of x (n) in fixed chunks, then the chunk sums in order: the same for any
// number of threads.
double sum_squares(const real *x, size_t n) {
    enum { CHUNK = 1 << 16 };
    size_t n_chunks = (n + CHUNK - 1) / CHUNK;
    double *partial = xcalloc(n_chunks, sizeof(double)), total = 0;
    #pragma omp parallel for
    for (size_t ch = 0; ch < n_chunks; ch++) {
        double s = 0;
        size_t end = (ch + 1) * CHUNK < n ? (ch + 1) * CHUNK : n;
        for (size_t i = ch * CHUNK; i < end; i++) s += (double)x[i] * x[i];
        partial[ch] = s;
    }
    for (size_t ch = 0; ch < n_chunks; ch++) total += partial[ch];
    free(partial);
    return total;
}

// Global L2 norm of the gradients; when it exceeds max_norm (> 0), scales them down to it.
// Returns the norm before clipping.
double ouro_clip_grad(Ouro *m, double max_norm) {
    double norm = sqrt(sum_squares(m->grads_memory, m->n_params));
    if (max_norm > 0 && norm > max_norm) {
        real scale = (real)(max_norm / norm);
        #pragma omp parallel for
        for (size_t i = 0; i < m->n_params; i++) m->grads_memory[i] *= scale;
    }
    return norm;
}

// One AdamW step (beta1 0.9, beta2 0.95, eps 1e-8, decoupled weight decay on matrices only) on
// the tensors of the last backward's objective (m->grad_mode: after a Stage II backward, the gate
// alone, even if an evaluation forward ran since):
//   m = b1 m + (1-b1) g        v = b2 v + (1-b2) g^2
//   w -= lr * ( (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + wd * w )
void ouro_adamw(Ouro *m, double lr, double weight_decay) {
    const double b1 = 0.9, b2 = 0.95, eps = 1e-8;
    m->step++;
    double c1 = 1 - pow(b1, (double)m->step), c2 = 1 - pow(b2, (double)m->step);
    size_t off = 0;
    for (int i = 0; i < N_PARAM_TENSORS; i++) {
        size_t n = m->param_sizes[i];
        if (tensor_trainable(m->grad_mode, i)) {
            real *w = m->params_memory + off, *g = m->grads_memory + off;
            real *mm = m->adam_m + off, *vv = m->adam_v + off;
            double wd = param_is_matrix[i] ? weight_decay : 0;
            #pragma omp parallel for
            for (size_t j = 0; j < n; j++) {
                mm[j] = (real)(b1 * mm[j] + (1 - b1) * g[j]);
                vv[j] = (real)(b2 * vv[j] + (1 - b2) * g[j] * g[j]);
                double update = (mm[j] / c1) / (sqrt(vv[j] / c2) + eps) + wd * w[j];
                w[j] = (real)(w[j] - lr * update);
            }
        }
        off += n;
    }
}

// The name of the first tensor of a parameter-shaped array holding a NaN or an infinity (or,
// when `nonnegative`, a negative value), or NULL.
const char *first_bad_tensor(const Ouro *m, const real *memory, int nonnegative) {
    for (int i = 0; i < N_PARAM_TENSORS; i++) {
        const real *x = param_tensor((real *)memory, m->param_sizes, i);
        for (size_t j = 0; j < m->param_sizes[i]; j++)
            if (!isfinite(x[j]) || (nonnegative && x[j] < 0)) return param_names[i];
    }
    return NULL;
}

const char *first_nonfinite_tensor(const Ouro *m, const real *memory) { return first_bad_tensor(m, memory, 0); }

void ouro_free(Ouro *m) {
    acts_free(m);
    free(m->params_memory);
    free(m->grads_memory);
    free(m->adam_m);
    free(m->adam_v);
    free(m->rope_cos);
    free(m->rope_sin);
    memset(m, 0, sizeof *m);
}

// ----------------------------------------------------------------------------
// 9. checkpoints
//
// Checkpoints and exports are written as the structs and floats lie in memory, which is the
// little-endian layout the formats promise only on a little-endian machine (x86, ARM as Linux
// runs it): a big-endian build stops here rather than write files no other build can read.
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "checkpoint and export formats are little-endian");
//
// A checkpoint holds what the model and optimizer need to continue training exactly, given the
// same training flags (the stage, beta/k/gamma and the schedule are the trainer's, not stored):
// the config, the optimizer step, the caller's RNG state and data position, then three arrays of
// n_params reals in the parameter layout of section 2: parameters, AdamW m, AdamW v. Layout
// (little-endian):
//   offset   0  char[8]  magic "OUROCKPT"
//            8  uint32   version (1)
//           12  uint32   real_bytes: 4 (float32), or 8 from the double-precision test build
//           16  Config   40 bytes: int32 V d H F L T max_seq_len tied, float32 rope_theta norm_eps
//           56  uint64   n_params
//           64  uint64   step        optimizer steps taken (at most INT32_MAX)
//           72  uint64   rng_state   the trainer's RNG (batch sampling resumes where it stopped)
//           80  uint64   data_pos    the trainer's data position
//           88  zeros up to 128
//          128  params, adam_m, adam_v    3 * n_params * real_bytes
// The file length must equal 128 + 3 * n_params * real_bytes exactly. The loader also rejects
// non-zero reserved bytes, non-finite values and a negative second moment: none occurs in a
// healthy run (train stops before saving when a loss or gradient is not finite), and training from
// such a file would spread NaNs.

#define CKPT_MAGIC "OUROCKPT"
#define CKPT_VERSION 1

typedef struct {
    char magic[8];
    uint32_t version;
    uint32_t real_bytes;
    Config config;
    uint64_t n_params;
    uint64_t step;
    uint64_t rng_state;
    uint64_t data_pos;
    uint8_t reserved[40];
} CheckpointHeader;
_Static_assert(sizeof(CheckpointHeader) == 128, "checkpoint header must be 128 bytes");
_Static_assert(offsetof(CheckpointHeader, n_params) == 56, "checkpoint header layout");

static int all_zero(const uint8_t *bytes, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (bytes[i]) return 0;
    return 1;
}

int ouro_save_checkpoint(const Ouro *m, const char *path, uint64_t rng_state, uint64_t data_pos) {
    CheckpointHeader hdr;
    memset(&hdr, 0, sizeof hdr);
    memcpy(hdr.magic, CKPT_MAGIC, 8);
    hdr.version = CKPT_VERSION;
    hdr.real_bytes = sizeof(real);
    hdr.config = m->cfg;
    hdr.n_params = m->n_params;
    hdr.step = m->step;
    hdr.rng_state = rng_state;
    hdr.data_pos = data_pos;
    AtomicFile af;
    if (atomic_open(&af, path)) return -1;
    atomic_write(&af, &hdr, sizeof hdr);
    atomic_write(&af, m->params_memory, m->n_params * sizeof(real));
    if (m->adam_m) {
        atomic_write(&af, m->adam_m, m->n_params * sizeof(real));
        atomic_write(&af, m->adam_v, m->n_params * sizeof(real));
    } else {  // never trained: the moments are zero
        real zero[1024] = {0};
        for (int pass = 0; pass < 2; pass++)
            for (size_t done = 0; done < m->n_params; done += 1024)
                atomic_write(&af, zero, (m->n_params - done < 1024 ? m->n_params - done : 1024) * sizeof(real));
    }
    return atomic_commit(&af);
}

// Reads a checkpoint into a fresh model (m must not hold one). Every header field and the exact
// file length are checked before anything is allocated. Returns 0 or -1 with ouro_error set.
int ouro_load_checkpoint(Ouro *m, const char *path, uint64_t *rng_state, uint64_t *data_pos) {
    memset(m, 0, sizeof *m);
    long long size = file_size(path);
    if (size < 0) return -1;
    CheckpointHeader hdr;
    if ((size_t)size < sizeof hdr) return fail(path, "truncated: %lld bytes, shorter than the %zu-byte header", size, sizeof hdr);
    FILE *f = fopen(path, "rb");
    if (!f) return fail(path, "cannot open: %s", strerror(errno));
    if (fread(&hdr, sizeof hdr, 1, f) != 1) { fclose(f); return fail(path, "cannot read the header"); }
    int err = 0;
    if (memcmp(hdr.magic, CKPT_MAGIC, 8) != 0) err = fail(path, "not an ouro checkpoint (bad magic)");
    else if (hdr.version != CKPT_VERSION) err = fail(path, "checkpoint version %u, this build reads %d", hdr.version, CKPT_VERSION);
    else if (hdr.real_bytes != sizeof(real))
        err = fail(path, "holds %u-byte reals, this build uses %zu-byte reals", hdr.real_bytes, sizeof(real));
    else if (config_validate(&hdr.config, path)) err = -1;
    else if (hdr.step > INT32_MAX) err = fail(path, "step %llu is out of range", (unsigned long long)hdr.step);
    else if (!all_zero(hdr.reserved, sizeof hdr.reserved)) err = fail(path, "reserved header bytes are not zero");
    if (err) { fclose(f); return -1; }
    size_t sizes[N_PARAM_TENSORS], n_params, body;
    if (param_sizes(&hdr.config, sizes, &n_params)) { fclose(f); return fail(path, "%s", ouro_error); }
    if (hdr.n_params != n_params) {
        fclose(f);
        return fail(path, "header says %llu parameters, its config implies %zu", (unsigned long long)hdr.n_params, n_params);
    }
    if (size_mul(n_params, 3 * sizeof(real), &body) || (unsigned long long)size != sizeof hdr + (unsigned long long)body) {
        fclose(f);   // (param_sizes keeps 4 x n_params reals addressable, so the sum cannot overflow)
        return fail(path, "file is %lld bytes, its header implies %zu (%zu + 3 x %zu parameters x %zu bytes)",
                    size, sizeof hdr + 3 * n_params * sizeof(real), sizeof hdr, n_params, sizeof(real));
    }
    if (ouro_build(m, &hdr.config)) { fclose(f); return fail(path, "%s", ouro_error); }
    ouro_alloc_training(m);
    int ok = fread(m->params_memory, sizeof(real), n_params, f) == n_params &&
             fread(m->adam_m, sizeof(real), n_params, f) == n_params &&
             fread(m->adam_v, sizeof(real), n_params, f) == n_params;
    fclose(f);
    if (!ok) { ouro_free(m); return fail(path, "short read"); }
    const char *what = "a non-finite parameter", *bad = first_bad_tensor(m, m->params_memory, 0);
    if (!bad) what = "a non-finite first moment", bad = first_bad_tensor(m, m->adam_m, 0);
    if (!bad) what = "a non-finite or negative second moment", bad = first_bad_tensor(m, m->adam_v, 1);
    if (bad) { ouro_free(m); return fail(path, "corrupt: %s in %s", what, bad); }
    m->step = hdr.step;
    if (rng_state) *rng_state = hdr.rng_state;
    if (data_pos) *data_pos = hdr.data_pos;
    return 0;
}

// ----------------------------------------------------------------------------
// 10. export: the weights-only file run.c memory-maps
//
// Float32 weights whatever the build, in the parameter order of section 2 (no head when tied),
// followed by the tokenizer file, embedded whole so that one file is the whole model:
//   offset   0  char[8]  magic "OUROMODL"
//            8  uint32   version (1)
//           12  uint32   header_bytes (256): the weights start here, 64-byte aligned for mmap
//           16  Config   40 bytes, as in the checkpoint
//           56  uint64   n_weights        float32 values that follow the header
//           64  uint64   tokenizer_bytes  length of the embedded tokenizer file (0: none)
//           72  zeros up to 256
//          256  float32 weights[n_weights]
//               tokenizer file (its own format, magic "OUROTOKN")
// The file length must equal 256 + 4 * n_weights + tokenizer_bytes exactly; the reserved bytes
// must be zeros and every weight finite.

#define EXPORT_MAGIC "OUROMODL"
#define EXPORT_VERSION 1

typedef struct {
    char magic[8];
    uint32_t version;
    uint32_t header_bytes;
    Config config;
    uint64_t n_weights;
    uint64_t tokenizer_bytes;
    uint8_t reserved[184];
} ExportHeader;
_Static_assert(sizeof(ExportHeader) == 256, "export header must be 256 bytes");

int ouro_export(const Ouro *m, const char *path, const void *tokenizer_file, size_t tokenizer_bytes) {
    ExportHeader hdr;
    memset(&hdr, 0, sizeof hdr);
    memcpy(hdr.magic, EXPORT_MAGIC, 8);
    hdr.version = EXPORT_VERSION;
    hdr.header_bytes = sizeof hdr;
    hdr.config = m->cfg;
    hdr.n_weights = m->n_params;
    hdr.tokenizer_bytes = tokenizer_bytes;
    AtomicFile af;
    if (atomic_open(&af, path)) return -1;
    atomic_write(&af, &hdr, sizeof hdr);
    float chunk[1024];
    for (size_t done = 0; done < m->n_params; done += 1024) {
        size_t n = m->n_params - done < 1024 ? m->n_params - done : 1024;
        for (size_t i = 0; i < n; i++) chunk[i] = (float)m->params_memory[done + i];
        atomic_write(&af, chunk, n * sizeof(float));
    }
    atomic_write(&af, tokenizer_file, tokenizer_bytes);
    return atomic_commit(&af);
}

// Checks an export file held in memory (size bytes at data, e.g. a mapping): magic, version,
// header size, config, weight count, exact length, zero reserved bytes and finite weights. On
// success fills *hdr. Returns 0 or -1 with ouro_error.
int export_check(const void *data, size_t size, const char *path, ExportHeader *hdr) {
    if (size < sizeof *hdr) return fail(path, "truncated: %zu bytes, shorter than the %zu-byte header", size, sizeof *hdr);
    memcpy(hdr, data, sizeof *hdr);
    if (memcmp(hdr->magic, EXPORT_MAGIC, 8) != 0) return fail(path, "not an ouro model export (bad magic)");
    if (hdr->version != EXPORT_VERSION) return fail(path, "export version %u, this build reads %d", hdr->version, EXPORT_VERSION);
    if (hdr->header_bytes != sizeof *hdr) return fail(path, "header_bytes %u, expected %zu", hdr->header_bytes, sizeof *hdr);
    if (config_validate(&hdr->config, path)) return -1;
    size_t sizes[N_PARAM_TENSORS], n_params, body = 0;
    if (param_sizes(&hdr->config, sizes, &n_params)) return fail(path, "%s", ouro_error);
    if (hdr->n_weights != n_params)
        return fail(path, "header says %llu weights, its config implies %zu", (unsigned long long)hdr->n_weights, n_params);
    if (size_mul(n_params, sizeof(float), &body) || size_add(body, sizeof *hdr, &body) ||
        hdr->tokenizer_bytes > SIZE_MAX - body || size != body + hdr->tokenizer_bytes)
        return fail(path, "file is %zu bytes, its header implies %zu + %llu tokenizer bytes", size, body,
                    (unsigned long long)hdr->tokenizer_bytes);
    if (!all_zero(hdr->reserved, sizeof hdr->reserved)) return fail(path, "reserved header bytes are not zero");
    const float *weights = (const float *)((const char *)data + sizeof *hdr);
    for (size_t i = 0; i < n_params; i++)
        if (!isfinite(weights[i])) return fail(path, "corrupt: weight %zu of %zu is not finite", i, n_params);
    return 0;
}

#endif // OURO_C
