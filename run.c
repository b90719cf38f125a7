// run.c: inference for a LoopLM exported by train.c, with exits that really skip compute.
//
//   ./run model.bin -i "Once upon a time"          generate at the trained depth T
//   ./run model.bin -q 0.6 --show-depth            Q-exit: every token stops at its own depth
//   ./run model.bin --eval valid.txt               the compute / quality trade-off table
//   ./run --help                                   every flag
//
// In the spirit of llama2.c's run.c: a Model (the weights memory-mapped from the export, plus the
// tokenizer embedded in the same file), a RunState (KV caches and one token's activations) and a
// Sampler. The prompt goes through ouro.c's own layer_forward in one batched pass, on the mapped
// weights; decoding runs ouro.c's norms, RoPE, SwiGLU and exit gate on one token, with
// matrix-vector products of its own on a copy of the weight matrices repacked for them at load
// time (see "Matrix-vector products of decoding"), and a one-query attention.
//
// Decoding one token (LOOPLM.md §4). The L shared layers run for t = 1, 2, ...; after each step
// the final norm gives h_t and the exit gate z_t = h_t . w + b, and the exit policy decides:
//   static n    stop after exactly n steps; n may exceed the trained T (extrapolation), up to 2T
//   Q-exit q    stop at the first n with CDF(n) = p(1) + ... + p(n) >= q; q = 1 always runs T
//   hdiff eps   stop at the first n >= 2 with ||h_n - h_{n-1}||_2 < eps, at most T steps
// Only at the exit step does the LM head run (one V x d matrix-vector product). The steps after
// the exit are never computed, and the layer-steps that do run are counted: "average depth" and
// "layer computations saved" are measurements. The exit step of a generated token is the depth of
// the forward pass that produced its distribution (the pass at the previous position).
//
// KV caches. Attention at step t reads the keys and values that step t produced for the earlier
// positions, so a decoder needs one cache per (step, layer). The prompt is prefilled in one
// batched pass through every step the policy can use (T, or n for static n), and its positions
// keep their K/V of every step, whatever the strategy (the paper shares caches only while
// decoding). A decoded position that exits at step n has no K/V at steps n+1.. . With --kv:
//   full   (default) one cache per step. The missing steps of an early-exited position are filled
//          with its step-n K/V (the last ones it computed).
//   first  one cache per layer for the decoded positions: later tokens read, at every step, the
//          position's step-1 K/V.
//   last   one cache per layer: the position's K/V of its last computed step (its exit step).
//   avg    one cache per layer: the mean of the position's K/V over the steps it computed.
// For every strategy the current token attends, at step t, to its own fresh step-t K/V (exactly
// as with full caches); the strategy only decides what a finished position leaves behind for the
// tokens after it. Cache memory of the decoded positions: full = (steps) x (first, last or avg).
//
// Evaluation (--eval FILE): a text file (stories separated by <|endoftext|> lines, each encoded
// and followed by the <|endoftext|> token, as prepare does) or a .bin token shard, cut into
// windows of max_seq_len tokens. Every window is decoded token by token from position 0 with
// teacher forcing, so every position is a decoded one and the KV strategy affects every number.
// Windows are independent and run in parallel (one RunState per thread; sums in window order, so
// the numbers do not depend on the thread count). Reported: CE and perplexity for static depths
// 1..2T (one decode at 2T steps reading the head after every step: step n never reads anything a
// later step writes, so this equals decoding at static n, which test_run.c checks), each KV
// strategy at full depth T with its cache memory, and Q-exit at several q under each KV strategy
// with the average depth and the fraction of layer computations saved (q = 1 runs T steps for
// every token, so its rows repeat the static-T numbers instead of decoding everything again);
// with --eval-eps, the hidden-state difference exit as well.
//
// Build: gcc -O3 -march=native -std=gnu11 -Wall -Wextra -fopenmp -o run run.c -lm
#ifdef OURO_DOUBLE
#error "run.c is float-only (the export holds float32 weights): build it without -DOURO_DOUBLE"
#endif

#include "ouro.c"
#include "tinystories/tokenizer.c"
#include "tinystories/data.c"
#include <fcntl.h>
#include <limits.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// Matrix-vector products of decoding
//
// Decoding runs one token at a time, so every weight is read once per step and used for a single
// multiply-add: the products are bound by memory traffic, not by arithmetic. Two layouts:
//
// Weights (matvec_packed). Row-major, out[r] = w[r] . x needs one dot product per row, and for
// rows as short as ours (128..688 values) most of a dot product's time goes to its final
// reduction, the partial sums added up across the lanes of a vector. So at load time each weight
// matrix is repacked (repack_rows) into blocks of ROW_BLOCK = 16 rows stored column by column:
//     packed[(b * cols + i) * 16 + r] = w[b * 16 + r][i]
// Two vector loads then bring column i of 16 rows (one cache line), two FMAs with the broadcast
// x[i] update the 16 outputs in the lanes where they will stay, and no reduction across lanes is
// ever needed. The weights are read in one contiguous stream.
//
// Keys (key_scores). A query's scores are the same kind of product: q against every cached key,
// one row per position, and with hd = 32 values per head a row is even shorter. So the key caches
// use the same layout, grown one position (row) at a time: blocks of 16 positions, column by
// column inside (key_index), and 16 positions' scores are one block_dot. Values stay one row per
// position: attention's weighted sum of them (weighted_rows) reads rows.
//
// Every output's sum has a fixed order, so results do not depend on the number of threads.

#define ROW_BLOCK 16
#define LANES 8

// Multiply-adds from which a product is split over the threads. That pays when the product
// takes longer than starting the team. OpenMP threads spin for a while between parallel
// regions by default and start in about a microsecond: from 8K multiply-adds up (a 128 x 64
// product) two threads win. With OMP_WAIT_POLICY=passive (advised on a busy machine) they
// sleep, and waking them takes tens of microseconds: only from 1M up. Measured on 2 cores,
// d = 256 model: spinning, 2 threads decode 1.3-1.7x faster than 1 with the low bound; sleeping,
// the low bound made them 2x slower than 1 thread (and 6x for d = 128).
long parallel_min(void) {
    static long min;   // set once, by the first call (model_load's, before any parallel region)
    if (!min) {
        const char *policy = getenv("OMP_WAIT_POLICY");
        min = policy && !strcasecmp(policy, "passive") ? 1L << 20 : 8L << 10;
    }
    return min;
}

// packed (round_up(rows, 16) * cols) = w (rows, cols) in blocks of 16 rows, column-major inside
// a block; rows past the end are zeros.
void repack_rows(float *packed, const float *w, int rows, int cols) {
    for (int b = 0; b * ROW_BLOCK < rows; b++)
        for (int i = 0; i < cols; i++)
            for (int r = 0; r < ROW_BLOCK; r++) {
                int row = b * ROW_BLOCK + r;
                packed[((size_t)b * cols + i) * ROW_BLOCK + r] = row < rows ? w[(size_t)row * cols + i] : 0;
            }
}

size_t repacked_size(int rows, int cols) {
    return (size_t)(rows + ROW_BLOCK - 1) / ROW_BLOCK * ROW_BLOCK * (size_t)cols;
}

// out[0..n) = the first n (1..16) rows of one block of a repacked matrix (or key cache) @ x.
// Four accumulators take the columns in turn (column i goes to acc[i % 4], a tail of cols % 4
// columns to acc[0]): independent chains of FMAs (each accumulator is two 8-wide vectors), then a
// pairwise sum. Each broadcast of x[i] feeds two FMAs. A block of 16 rows is one stream. The 8-row
// blocks before it, done two at a time for the same reuse of x, read two streams 8 * cols floats
// apart: the tiny model's decoding took 1.03-1.07x the time (paired runs, 1 and 2 threads);
// medium's, which waits on memory, the same within noise. The first four columns set the
// accumulators rather than add to zeros: gcc made `= {0}` a call to memset on every block (the
// tiny model's decoding 0.98-0.99x without it; the sums are the same, as 0 + a b = a b).
static void block_dot(float *out, const float *restrict block, const float *restrict x, int cols, int n) {
    float acc[4][ROW_BLOCK];
    int i = 0;
    if (cols >= 4) {
        for (int p = 0; p < 4; p++) {
            #pragma GCC unroll 1
            for (int r = 0; r < ROW_BLOCK; r++) acc[p][r] = block[(size_t)p * ROW_BLOCK + r] * x[p];
        }
        i = 4;
    } else {
        for (int p = 0; p < 4; p++)
            for (int r = 0; r < ROW_BLOCK; r++) acc[p][r] = 0;
    }
    for (; i + 4 <= cols; i += 4)
        for (int p = 0; p < 4; p++) {
            #pragma GCC unroll 1   // keep r a loop: gcc makes it two 8-wide FMAs
            for (int r = 0; r < ROW_BLOCK; r++) acc[p][r] += block[(size_t)(i + p) * ROW_BLOCK + r] * x[i + p];
        }
    for (; i < cols; i++)
        for (int r = 0; r < ROW_BLOCK; r++) acc[0][r] += block[(size_t)i * ROW_BLOCK + r] * x[i];
    for (int r = 0; r < n; r++) out[r] = (acc[0][r] + acc[1][r]) + (acc[2][r] + acc[3][r]);
}

// out (rows) = W @ x (cols), W repacked by repack_rows; split over threads by blocks (16 rows)
// when the product is big enough to pay for the thread team. Otherwise no parallel region is
// entered at all: even a one-thread region costs ~0.4 us, and a token makes dozens of products.
void matvec_packed(float *out, const float *packed, const float *x, int rows, int cols, int threads) {
    int blocks = (rows + ROW_BLOCK - 1) / ROW_BLOCK;
    size_t stride = (size_t)cols * ROW_BLOCK;   // between blocks
    if (threads > 1 && !in_parallel() && (long)rows * cols >= parallel_min()) {
        #pragma omp parallel for num_threads(threads)
        for (int b = 0; b < blocks; b++)
            block_dot(out + b * ROW_BLOCK, packed + b * stride, x, cols, min_int(ROW_BLOCK, rows - b * ROW_BLOCK));
    } else {
        for (int b = 0; b < blocks; b++)
            block_dot(out + b * ROW_BLOCK, packed + b * stride, x, cols, min_int(ROW_BLOCK, rows - b * ROW_BLOCK));
    }
}

// Key caches hold positions as repack_rows holds rows: blocks of ROW_BLOCK, column by column.
// Index of element i of the key at `row` (rows counted from the start of its cache region).
static inline size_t key_index(int row, int i, int d) {
    return (size_t)(row / ROW_BLOCK) * ROW_BLOCK * d + (size_t)i * ROW_BLOCK + row % ROW_BLOCK;
}

void key_write(float *keys, int row, const float *k, int d) {
    for (int i = 0; i < d; i++) keys[key_index(row, i, d)] = k[i];
}

// out[r] = key r . q over columns [c0, c0 + n) (one head) for the rows r < rows of a key region, a
// block of 16 positions at a time. A last partial block also computes the padding positions
// (zeros, or keys of a longer earlier context), which are not copied out.
void key_scores(float *out, const float *keys, int c0, const float *q, int rows, int n, int d) {
    size_t stride = (size_t)ROW_BLOCK * d;   // between blocks
    for (int first = 0; first < rows; first += ROW_BLOCK)
        block_dot(out + first, keys + (size_t)(first / ROW_BLOCK) * stride + (size_t)c0 * ROW_BLOCK, q, n,
                  min_int(ROW_BLOCK, rows - first));
}

// y[0..width) += sum over j < rows of p[j] * v[j * ld + 0..width): width (4 LANES, LANES or 1)
// is a constant at each call, so the sums stay in registers while j runs: four independent
// 8-lane FMA chains for the widest.
static inline void weighted_sum(float *restrict y, const float *restrict v, size_t ld,
                                const float *restrict p, int rows, int width) {
    float acc[4 * LANES] = {0};
    for (int j = 0; j < rows; j++)
        for (int u = 0; u < width; u++) acc[u] += p[j] * v[j * ld + u];
    for (int u = 0; u < width; u++) y[u] += acc[u];
}

// y (cols) += p (rows) @ v (rows, cols; row stride ld): attention's weighted sum of values.
void weighted_rows(float *y, const float *v, size_t ld, const float *p, int rows, int cols) {
    int i = 0;
    for (; i + 4 * LANES <= cols; i += 4 * LANES) weighted_sum(y + i, v + i, ld, p, rows, 4 * LANES);
    for (; i + LANES <= cols; i += LANES) weighted_sum(y + i, v + i, ld, p, rows, LANES);
    for (; i < cols; i++) weighted_sum(y + i, v + i, ld, p, rows, 1);
}

// ----------------------------------------------------------------------------
// Model: the export file, memory-mapped

// The weight matrices again, repacked for decoding (see repack_rows above): one allocation holding
// all L wqkv, then all L wo, mlp_gate_up, mlp_down, then head; each matrix (rows, cols) takes
// round_up(rows, ROW_BLOCK) * cols floats.
// Matrices that multiply the same vector are stacked into one: wq, wk, wv (their rows one after
// the other) and mlp_gate, mlp_up. One product, one parallel region, instead of three or two.
typedef struct {
    float *wqkv;               // (L) x repacked (3d, d): rows wq, then wk, then wv
    float *wo;                 // (L) x repacked (d, d)
    float *mlp_gate_up;        // (L) x repacked (2F, d): rows mlp_gate, then mlp_up
    float *mlp_down;           // (L) x repacked (d, F)
    float *head;               // repacked (V, d)
} DecodeWeights;

typedef struct {
    Config cfg;
    Ouro net;               // a view for ouro.c's kernels: cfg, params into the mapping, RoPE table
    DecodeWeights dec;      // the matrices repacked for one-token decoding (and the prompt's head)
    float *dec_memory;
    Tokenizer tokenizer;    // from the tokenizer file embedded after the weights
    int has_tokenizer;      // 0 when the export carries none (then only --eval on a shard works)
    void *map;              // the whole file, read-only
    size_t map_bytes;
} Model;

void model_free(Model *m) {
    acts_free(&m->net);  // the prefill's activations (the parameters belong to the mapping)
    free(m->dec_memory);
    free(m->net.rope_cos);
    free(m->net.rope_sin);
    if (m->has_tokenizer) tokenizer_free(&m->tokenizer);
    if (m->map) munmap(m->map, m->map_bytes);
    memset(m, 0, sizeof *m);
}

// Repacks every weight matrix that decoding multiplies (the prompt's batched pass reads the
// mapping through ouro.c). Costs as much memory again as the matrices. Returns 0 or -1.
int decode_weights_build(Model *m) {
    const Config *c = &m->cfg;
    const Params *p = &m->net.params;
    int L = c->L, d = c->d, F = c->F;
    size_t qkv = repacked_size(3 * d, d), sq = repacked_size(d, d), in = repacked_size(2 * F, d);
    size_t out = repacked_size(d, F), head = repacked_size(c->V, d);
    size_t per_layer = qkv + sq + in + out, total;  // sizes already bounded by export_check
    if (size_mul(per_layer, (size_t)L, &total) || size_add(total, head, &total) || total > SIZE_MAX / sizeof(float))
        return fail("decode weights", "size overflows");
    float *mem = m->dec_memory = xmalloc_huge(total * sizeof(float));   // read at every token
    DecodeWeights *w = &m->dec;
    w->wqkv = mem, mem += L * qkv;
    w->wo = mem, mem += L * sq;
    w->mlp_gate_up = mem, mem += L * in;
    w->mlp_down = mem, mem += L * out;
    w->head = mem;
    size_t dd = (size_t)d * d, Fd = (size_t)F * d;
    float *stack = xmalloc((3 * dd > 2 * Fd ? 3 * dd : 2 * Fd) * sizeof(float));  // stacked rows, row-major
    for (int l = 0; l < L; l++) {
        memcpy(stack, p->wq + l * dd, dd * sizeof(float));
        memcpy(stack + dd, p->wk + l * dd, dd * sizeof(float));
        memcpy(stack + 2 * dd, p->wv + l * dd, dd * sizeof(float));
        repack_rows(w->wqkv + l * qkv, stack, 3 * d, d);
        repack_rows(w->wo + l * sq, p->wo + l * dd, d, d);
        memcpy(stack, p->mlp_gate + l * Fd, Fd * sizeof(float));
        memcpy(stack + Fd, p->mlp_up + l * Fd, Fd * sizeof(float));
        repack_rows(w->mlp_gate_up + l * in, stack, 2 * F, d);
        repack_rows(w->mlp_down + l * out, p->mlp_down + l * Fd, d, F);
    }
    free(stack);
    repack_rows(w->head, p->head, c->V, d);
    return 0;
}

// Maps an export (layout in ouro.c section 10) and checks it whole (export_check: magic, version,
// sizes, exact length, finite weights) before any weight is used; then the embedded tokenizer
// (same checks as tokenizer_load) and that its vocabulary is the model's. Returns 0 or -1.
int model_load(Model *m, const char *path) {
    memset(m, 0, sizeof *m);
    parallel_min();   // reads OMP_WAIT_POLICY now, before any parallel region can
    long long size = file_size(path);
    if (size < 0) return -1;
    if ((size_t)size < sizeof(ExportHeader))
        return fail(path, "truncated: %lld bytes, shorter than the %zu-byte header", size, sizeof(ExportHeader));
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fail(path, "cannot open: %s", strerror(errno));
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return fail(path, "cannot map: %s", strerror(errno));
    m->map = map;
    m->map_bytes = (size_t)size;
    ExportHeader hdr;
    if (export_check(map, (size_t)size, path, &hdr)) { model_free(m); return -1; }
    m->cfg = hdr.config;

    const char *weights = (const char *)map + hdr.header_bytes;
    if (hdr.tokenizer_bytes > 0) {
        char name[4200];
        snprintf(name, sizeof name, "%s (embedded tokenizer)", path);
        if (tokenizer_load_memory(&m->tokenizer, weights + hdr.n_weights * sizeof(float), hdr.tokenizer_bytes, name)) {
            model_free(m);
            return -1;
        }
        m->has_tokenizer = 1;
        if (m->tokenizer.vocab_size != m->cfg.V) {
            int tv = m->tokenizer.vocab_size;
            model_free(m);
            return fail(path, "the embedded tokenizer has %d tokens, the model's vocabulary is V=%d", tv, hdr.config.V);
        }
    }

    // The parameters point into the mapping (PROT_READ: a stray write would fault, not corrupt).
    Ouro *net = &m->net;
    net->cfg = m->cfg;
    param_sizes(&m->cfg, net->param_sizes, &net->n_params);  // cannot fail: export_check ran it
    params_carve(&net->params, (real *)weights, net->param_sizes, m->cfg.tied);
    size_t rope;
    if (size_mul((size_t)m->cfg.max_seq_len, (size_t)(m->cfg.d / m->cfg.H / 2), &rope) || rope > SIZE_MAX / sizeof(float)) {
        model_free(m);
        return fail(path, "RoPE table size overflows");
    }
    net->rope_cos = xmalloc(rope * sizeof(float));
    net->rope_sin = xmalloc(rope * sizeof(float));
    rope_table_fill(net);  // ouro.c's table: positions rotate exactly as in training
    if (decode_weights_build(m)) { model_free(m); return fail(path, "decode weights: %s", ouro_error); }
    return 0;
}

// ----------------------------------------------------------------------------
// exit policies and KV strategies

typedef enum { EXIT_STATIC, EXIT_Q, EXIT_HDIFF } ExitKind;

typedef struct {
    ExitKind kind;
    int n;        // static: steps to run (1..2T)
    double q;     // Q-exit threshold in [0, 1]
    double eps;   // hidden-state difference threshold
} ExitPolicy;

// The most steps a token can run under the policy: the number of per-step caches needed.
int policy_max_steps(const ExitPolicy *pol, int T) { return pol->kind == EXIT_STATIC ? pol->n : T; }

void policy_describe(const ExitPolicy *pol, int T, char *buf, size_t size) {
    if (pol->kind == EXIT_STATIC)
        snprintf(buf, size, "static depth %d%s", pol->n, pol->n == T ? " (= T)" : pol->n > T ? " (beyond T: extrapolation)" : "");
    else if (pol->kind == EXIT_Q) snprintf(buf, size, "Q-exit q=%g", pol->q);
    else snprintf(buf, size, "hidden-state difference eps=%g", pol->eps);
}

typedef enum { KV_FULL, KV_FIRST, KV_LAST, KV_AVG, N_KV_STRATEGIES } KvStrategy;
static const char *const kv_names[N_KV_STRATEGIES] = {"full", "first", "last", "avg"};

// What one token's forward pass did. p(t) is known for the computed steps t <= T only.
typedef struct {
    int exit_step;              // steps run (1-based), i.e. the step whose head was read
    float z[OURO_MAX_STEPS];    // exit-gate logit after each computed step
    float p[OURO_MAX_T];        // exit probability p(t) of each computed step t <= T
} TokenTrace;

// The exit decision, step by step. p(t) and the CDF are accumulated as exit_distribution_forward
// and ouro_qexit_ce compute them (log space, then a sum in double), so q = 1 and static T agree.
typedef struct { float log_survive; double cdf; } ExitState;

// Called after step t (1-based) with its gate logit z and hdiff = ||h_t - h_{t-1}|| (t >= 2).
// Records z and p(t); returns 1 when the policy leaves after this step.
int exit_after_step(const ExitPolicy *pol, int T, int t, float z, float hdiff, ExitState *es, TokenTrace *tr) {
    tr->z[t - 1] = z;
    if (t <= T) {
        float log_p = t < T ? log_sigmoid(z) + es->log_survive : es->log_survive;  // lambda_T unused
        es->log_survive += log_sigmoid(-z);
        tr->p[t - 1] = exp(log_p);
        es->cdf += tr->p[t - 1];
    }
    switch (pol->kind) {
    case EXIT_STATIC: return t >= pol->n;
    case EXIT_Q: return t >= T || qexit_stop(es->cdf, pol->q);
    case EXIT_HDIFF: return t >= T || (t >= 2 && hdiff < pol->eps);
    }
    return 1;
}

// ||a - b||_2 over d elements.
float l2_distance(const float *a, const float *b, int d) {
    double s = 0;
    for (int i = 0; i < d; i++) s += (double)(a[i] - b[i]) * (a[i] - b[i]);
    return (float)sqrt(s);
}

// ----------------------------------------------------------------------------
// RunState: the KV caches and the activations of one token

typedef struct {
    KvStrategy kv;
    int n_steps;         // per-step caches kept: the most steps a token may run
    int L, d, seq_cap;   // layers, width, positions held (the run's context, at most max_seq_len)
    int split;           // positions < split keep K/V per step; the others use the shared cache
    // Regions of rows (positions) x d, each padded to whole blocks of 16 rows; keys in key_index's
    // blocks, values one row per position. step_region() and shared_region() give a region's first row.
    float *key_cache, *value_cache;    // (n_steps, L) regions of split rows
    float *key_shared, *value_shared;  // (L) regions of seq_cap - split rows; none for full (split = seq_cap)
    size_t cache_bytes;
    // one token
    float *x;            // (d) residual stream
    float *h, *h_prev;   // (d) read-outs of the current and the previous step
    float *xa, *att, *proj, *normed;  // (d)
    float *q, *k, *v;    // (d) each, consecutive: one product (wqkv) writes all three
    float *gate, *up;    // (F) each, consecutive: one product (mlp_gate_up) writes both
    float *act;          // (F)
    float *scores;       // (H, seq_cap) attention weights of one query
    float *kv_keep;      // (L, 2, d) the current token's step-1 K/V (first) or K/V sums (avg)
    float *logits;       // (V) the exit step's logits
    float *step_logits;  // (n_steps, V) optional: when set, the head is read after every step
    int threads;         // for one token's matrix-vector products and long attentions (set_thread_count)
    long long layer_steps, tokens;  // decoding work done: layer applications, tokens decoded
} RunState;

// Bytes of KV cache for a context of `context` positions whose first n_prefill positions were
// prefilled (they keep n_steps caches under every strategy). The allocation also pads each
// region to a whole block of 16 positions (at most 15 more rows per region).
size_t kv_cache_bytes(const Config *c, KvStrategy kv, int n_steps, int n_prefill, int context) {
    int split = kv == KV_FULL ? context : n_prefill;
    size_t per_row = 2 * (size_t)c->d * sizeof(float);  // a key and a value
    size_t step_rows = (size_t)n_steps * c->L * split, shared_rows = (size_t)c->L * (context - split);
    return (step_rows + shared_rows) * per_row;
}

void runstate_free(RunState *s) {
    float *bufs[] = {s->key_cache, s->value_cache, s->key_shared, s->value_shared, s->x, s->h, s->h_prev,
                     s->xa, s->q, s->att, s->proj, s->normed, s->gate, s->act,
                     s->scores, s->kv_keep, s->logits, s->step_logits};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    memset(s, 0, sizeof *s);
}

// Caches for n_steps steps (1..2T) under strategy kv, with n_prefill prompt positions (0 when
// decoding from position 0). step_logits: 1 to read the head after every step.
int runstate_init(RunState *s, const Model *m, KvStrategy kv, int n_steps, int n_prefill, int context,
                  int step_logits) {
    const Config *c = &m->cfg;
    memset(s, 0, sizeof *s);
    if (n_steps < 1 || n_steps > 2 * c->T) return fail("run", "%d steps: must be in [1, 2T = %d]", n_steps, 2 * c->T);
    if (context < 1 || context > c->max_seq_len)
        return fail("run", "a context of %d positions: the model's is max_seq_len = %d", context, c->max_seq_len);
    if (n_prefill < 0 || n_prefill > context)
        return fail("run", "prompt of %d tokens: the context is %d positions", n_prefill, context);
    s->kv = kv;
    s->n_steps = n_steps;
    s->L = c->L;
    s->d = c->d;
    s->seq_cap = context;
    s->threads = max_threads();
    s->split = kv == KV_FULL ? context : n_prefill;
    size_t d = c->d, step_rows, shared_rows = (size_t)c->L * round_up(context - s->split, ROW_BLOCK), n;
    if (size_mul((size_t)n_steps * c->L, (size_t)round_up(s->split, ROW_BLOCK), &step_rows) || size_mul(step_rows + shared_rows, d, &n) ||
        n > SIZE_MAX / (2 * sizeof(float)))
        return fail("run", "KV cache size overflows");
    s->cache_bytes = kv_cache_bytes(c, kv, n_steps, n_prefill, context);
    size_t step_bytes = step_rows * d * sizeof(float);   // bounded by the check above
    s->key_cache = xmalloc_huge(step_bytes);     // read at every token: 2 MiB pages
    s->value_cache = xmalloc_huge(step_bytes);
    memset(s->key_cache, 0, step_bytes);
    memset(s->value_cache, 0, step_bytes);
    if (shared_rows) {
        s->key_shared = xcalloc(shared_rows * d, sizeof(float));
        s->value_shared = xcalloc(shared_rows * d, sizeof(float));
    }
    float **vecs[] = {&s->x, &s->h, &s->h_prev, &s->xa, &s->att, &s->proj, &s->normed};
    for (size_t i = 0; i < sizeof vecs / sizeof *vecs; i++) *vecs[i] = xcalloc(d, sizeof(float));
    s->q = xcalloc(3 * d, sizeof(float));
    s->k = s->q + d;
    s->v = s->q + 2 * d;
    s->gate = xcalloc(2 * (size_t)c->F, sizeof(float));
    s->up = s->gate + c->F;
    s->act = xcalloc(c->F, sizeof(float));
    s->scores = xcalloc((size_t)c->H * c->max_seq_len, sizeof(float));
    s->kv_keep = xcalloc((size_t)c->L * 2 * d, sizeof(float));
    s->logits = xcalloc(c->V, sizeof(float));
    if (step_logits) s->step_logits = xcalloc((size_t)n_steps * c->V, sizeof(float));
    return 0;
}

// The cache region of step t, layer l (positions 0..split-1, row = pos), and the shared one of
// layer l (positions split.., row = pos - split): offsets of their first rows.
size_t step_region(const RunState *s, int t, int l) {
    return ((size_t)t * s->L + l) * round_up(s->split, ROW_BLOCK) * s->d;
}
size_t shared_region(const RunState *s, int l) {
    return (size_t)l * round_up(s->seq_cap - s->split, ROW_BLOCK) * s->d;
}

// ----------------------------------------------------------------------------
// decoding one token

// Threads while decoding one token. A token is a chain of small operations, and forking a thread
// team for each (ouro.c's elementwise kernels do from PARALLEL_MIN_VALUES values up, attention
// always) costs more than the work; on a busy machine a barrier can even wait milliseconds for a
// descheduled thread. So decode_token runs the small kernels on one thread and splits only the
// matrix-vector products and long attentions explicitly, over s->threads threads. Returns the
// previous setting.
int set_thread_count(int n) {
#ifdef _OPENMP
    int old = omp_get_max_threads();
    omp_set_num_threads(n);
    return old;
#else
    (void)n;
    return 1;
#endif
}

// Stores the current token's step-t K/V (s->k, s->v) as its own entry, where attention at step t
// will read it; keeps what its strategy needs to leave behind when the token finishes.
void kv_store(RunState *s, int t, int l, int pos) {
    size_t d = s->d;
    int shared = pos >= s->split, row = shared ? pos - s->split : pos;
    size_t region = shared ? shared_region(s, l) : step_region(s, t, l);
    key_write((shared ? s->key_shared : s->key_cache) + region, row, s->k, d);
    memcpy((shared ? s->value_shared : s->value_cache) + region + (size_t)row * d, s->v, d * sizeof(float));
    float *keep = s->kv_keep + (size_t)l * 2 * d;  // (2, d): key, value
    if ((s->kv == KV_FIRST || s->kv == KV_AVG) && t == 0) {
        memcpy(keep, s->k, d * sizeof(float));
        memcpy(keep + d, s->v, d * sizeof(float));
    } else if (s->kv == KV_AVG) {
        for (size_t i = 0; i < d; i++) { keep[i] += s->k[i]; keep[d + i] += s->v[i]; }
    }
}

// After the token at pos ran n steps: what it leaves for later tokens (see the top comment).
void kv_finish(RunState *s, int pos, int n) {
    int d = s->d;
    size_t bytes = (size_t)d * sizeof(float);
    for (int l = 0; l < s->L; l++) {
        float *keep = s->kv_keep + (size_t)l * 2 * d;  // (2, d): key, value
        if (pos < s->split) {  // per-step caches: steps n+1.. get the step-n K/V
            size_t exit = step_region(s, n - 1, l);
            for (int t = n; t < s->n_steps; t++) {
                size_t to = step_region(s, t, l);
                for (int i = 0; i < d; i++) s->key_cache[to + key_index(pos, i, d)] = s->key_cache[exit + key_index(pos, i, d)];
                memcpy(s->value_cache + to + (size_t)pos * d, s->value_cache + exit + (size_t)pos * d, bytes);
            }
            continue;
        }
        if (s->kv == KV_LAST) continue;  // the entry already holds the exit step's K/V
        if (s->kv == KV_AVG)             // keep holds the sums over the n steps: make them means
            for (int i = 0; i < 2 * d; i++) keep[i] /= n;
        size_t region = shared_region(s, l);  // KV_FIRST or KV_AVG: the entry gets keep
        key_write(s->key_shared + region, pos - s->split, keep, d);
        memcpy(s->value_shared + region + (size_t)(pos - s->split) * d, keep + d, bytes);
    }
}

// One query (s->q, after RoPE) against positions 0..pos of (step t, layer l): s->att (d).
// Per head:  scores_j = q . k_j / sqrt(hd),  P = softmax over j,  att = sum_j P_j v_j
// (the operations of attention_head_forward, for one row). Positions < split come
// from the per-step cache of step t, the later ones from the shared cache.
static void attention_decode_head(RunState *s, int t, int l, int pos, int H, int h) {
    int d = s->d, hd = d / H, n_step = pos < s->split ? pos + 1 : s->split;
    const float *k_step = s->key_cache + step_region(s, t, l), *v_step = s->value_cache + step_region(s, t, l);
    const float *k_shared = pos >= s->split ? s->key_shared + shared_region(s, l) : NULL;
    const float *v_shared = pos >= s->split ? s->value_shared + shared_region(s, l) : NULL;
    float scale = 1 / sqrt((float)hd);
    const float *q = s->q + h * hd;
    float *p = s->scores + (size_t)h * s->seq_cap, *y = s->att + h * hd;
    // this head's columns of the keys of the two regions
    key_scores(p, k_step, h * hd, q, n_step, hd, d);
    if (pos >= n_step) key_scores(p + n_step, k_shared, h * hd, q, pos + 1 - n_step, hd, d);
    float mx = scale * max_value(p, pos + 1);
    float inv = 1 / softmax_exp(p, pos + 1, scale, mx);  // ouro.c's softmax exponentials
    for (int i = 0; i < hd; i++) y[i] = 0;
    weighted_rows(y, v_step + h * hd, d, p, n_step, hd);
    if (pos >= n_step) weighted_rows(y, v_shared + h * hd, d, p + n_step, pos + 1 - n_step, hd);
    for (int i = 0; i < hd; i++) y[i] *= inv;
}

void attention_decode(RunState *s, int t, int l, int pos, int H) {
    if (s->threads > 1 && !in_parallel() && (long)(pos + 1) * s->d >= parallel_min()) {
        #pragma omp parallel for num_threads(s->threads)
        for (int h = 0; h < H; h++) attention_decode_head(s, t, l, pos, H, h);
    } else {  // no parallel region at all (see matvec_packed)
        for (int h = 0; h < H; h++) attention_decode_head(s, t, l, pos, H, h);
    }
}

// One sandwich layer (ouro.c's layer_forward) on the token at position pos, at step t (0-based).
// s->x (d) is the residual stream, updated in place:
//   x += norm_attn_post( wo( attention( rope(wq xa), rope(wk xa), wv xa ) ) ),  xa = norm_attn_pre(x)
//   x += norm_mlp_post( mlp_down( silu(mlp_gate xm) * mlp_up xm ) ),          xm = norm_mlp_pre(x)
void decode_layer(Model *m, RunState *s, int t, int l, int pos) {
    const Config *c = &m->cfg;
    const Params *p = &m->net.params;   // the norms
    const DecodeWeights *w = &m->dec;     // the matrices, repacked
    int d = c->d, F = c->F, half = d / c->H / 2;
    size_t qkv = repacked_size(3 * d, d), sq = repacked_size(d, d), in = repacked_size(2 * F, d), out = repacked_size(d, F);
    float rstd;  // rmsnorm_forward's saved statistic (unused here)
    const float *cos_pos = m->net.rope_cos + (size_t)pos * half, *sin_pos = m->net.rope_sin + (size_t)pos * half;

    rmsnorm_forward(s->xa, &rstd, s->x, p->norm_attn_pre + l * d, 1, d, c->norm_eps);
    matvec_packed(s->q, w->wqkv + l * qkv, s->xa, 3 * d, d, s->threads);   // q, k, v at once
    rope_apply(s->q, cos_pos, sin_pos, 1, 1, d, c->H, +1);  // the table row of this position
    rope_apply(s->k, cos_pos, sin_pos, 1, 1, d, c->H, +1);
    kv_store(s, t, l, pos);
    attention_decode(s, t, l, pos, c->H);
    matvec_packed(s->proj, w->wo + l * sq, s->att, d, d, s->threads);
    rmsnorm_forward(s->normed, &rstd, s->proj, p->norm_attn_post + l * d, 1, d, c->norm_eps);
    residual_forward(s->x, s->x, s->normed, d);

    rmsnorm_forward(s->xa, &rstd, s->x, p->norm_mlp_pre + l * d, 1, d, c->norm_eps);
    matvec_packed(s->gate, w->mlp_gate_up + l * in, s->xa, 2 * F, d, s->threads);  // gate, up at once
    swiglu_forward(s->act, s->gate, s->up, F);
    matvec_packed(s->proj, w->mlp_down + l * out, s->act, d, F, s->threads);
    rmsnorm_forward(s->normed, &rstd, s->proj, p->norm_mlp_post + l * d, 1, d, c->norm_eps);
    residual_forward(s->x, s->x, s->normed, d);
}

// Runs token (at position pos, with positions 0..pos-1 already in the caches) through the steps
// its exit policy asks for, and leaves the exit step's logits in s->logits. Returns the exit
// step, or -1 for a token or position out of range (ouro_error set).
int decode_token(Model *m, RunState *s, const ExitPolicy *pol, int token, int pos, TokenTrace *tr) {
    const Config *c = &m->cfg;
    const Params *p = &m->net.params;
    int d = c->d;
    if (token < 0 || token >= c->V) return fail("decode", "token %d is outside the vocabulary [0, %d)", token, c->V);
    if (pos < 0 || pos >= s->seq_cap) return fail("decode", "position %d is outside the context [0, %d)", pos, s->seq_cap);
    int saved_threads = set_thread_count(1);       // small kernels stay on this thread
    memcpy(s->x, p->embed + (size_t)token * d, d * sizeof(float));
    ExitState es = {0, 0};
    int t = 0, stop = 0;
    while (!stop) {                                 // the same L layers, step after step
        for (int l = 0; l < c->L; l++) decode_layer(m, s, t, l, pos);
        float *swap = s->h_prev, rstd, z;
        s->h_prev = s->h;
        s->h = swap;
        rmsnorm_forward(s->h, &rstd, s->x, p->norm_final, 1, d, c->norm_eps);  // h_t
        memcpy(s->x, s->h, d * sizeof(float));     // the normed h_t is the input of step t+1
        exit_gate_forward(&z, s->h, p->exit_w, p->exit_b, 1, d);
        if (s->step_logits) matvec_packed(s->step_logits + (size_t)t * c->V, m->dec.head, s->h, c->V, d, s->threads);
        s->layer_steps += c->L;
        t++;
        float hdiff = t >= 2 ? l2_distance(s->h, s->h_prev, d) : INFINITY;
        stop = exit_after_step(pol, c->T, t, z, hdiff, &es, tr) || t >= s->n_steps;
    }
    tr->exit_step = t;
    kv_finish(s, pos, t);
    if (s->step_logits) memcpy(s->logits, s->step_logits + (size_t)(t - 1) * c->V, c->V * sizeof(float));
    else matvec_packed(s->logits, m->dec.head, s->h, c->V, d, s->threads);  // the LM head, once, at the exit step
    s->tokens++;
    set_thread_count(saved_threads);
    return t;
}

// ----------------------------------------------------------------------------
// prefill: the prompt in one batched pass

// Runs tokens[0..n) through all s->n_steps steps at once with ouro.c's layer_forward (batched
// kernels and attention on (n, d) buffers), copying every (step, layer)'s K/V into the per-step
// caches. All steps run for every prompt position (later tokens attend to them at every step);
// the last position's exit step is then chosen by the policy from its read-outs, and that step's
// logits are left in s->logits. Returns the exit step, or -1 (ouro_error set).
int prefill(Model *m, RunState *s, const ExitPolicy *pol, const int *tokens, int n, TokenTrace *tr) {
    const Config *c = &m->cfg;
    Ouro *net = &m->net;
    int d = c->d;
    if (n < 1 || n > s->split) return fail("prefill", "%d prompt tokens: need 1..%d", n, s->split);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->V) return fail("prefill", "token %d at position %d is outside the vocabulary", tokens[i], i);
    if (acts_reserve(net, 1, n)) return -1;
    net->B = 1;
    net->S = n;
    net->n_steps = s->n_steps;
    net->mode = OURO_EVAL;
    embedding_forward(net->acts->emb, tokens, net->params.embed, n, d);
    ExitState es = {0, 0};
    int exit_step = 0;
    for (int t = 0; t < s->n_steps; t++) {
        for (int l = 0; l < c->L; l++) {
            layer_forward(net, t, l);
            const LayerActs *a = layer_acts(net, t, l);  // k after RoPE, v: (n, d), positions 0..n-1
            size_t region = step_region(s, t, l);
            for (int pos = 0; pos < n; pos++) key_write(s->key_cache + region, pos, a->k + (size_t)pos * d, d);
            memcpy(s->value_cache + region, a->v, (size_t)n * d * sizeof(float));
        }
        readout_forward(net, t);
        const float *h = step_h(net, t) + (size_t)(n - 1) * d;  // the last position's h_t
        float hdiff = t >= 1 ? l2_distance(h, step_h(net, t - 1) + (size_t)(n - 1) * d, d) : INFINITY;
        if (exit_after_step(pol, c->T, t + 1, net->acts->z[(size_t)t * n + n - 1], hdiff, &es, tr) && !exit_step)
            exit_step = t + 1;
        if (s->step_logits) matvec_packed(s->step_logits + (size_t)t * c->V, m->dec.head, h, c->V, d, s->threads);
    }
    if (!exit_step) exit_step = s->n_steps;
    tr->exit_step = exit_step;
    matvec_packed(s->logits, m->dec.head, step_h(net, exit_step - 1) + (size_t)(n - 1) * d, c->V, d, s->threads);
    return exit_step;
}

// ----------------------------------------------------------------------------
// Sampler (llama2.c's): greedy at temperature 0, else softmax(logits / temperature), sampled
// from the top-p nucleus when 0 < top_p < 1, else from the whole distribution.

typedef struct { float prob; int index; } ProbIndex;

typedef struct {
    int V;
    float temperature, top_p;
    Rng rng;
    ProbIndex *candidates;  // (V) scratch for top-p
} Sampler;

void sampler_init(Sampler *sp, int V, float temperature, float top_p, uint64_t seed) {
    sp->V = V;
    sp->temperature = temperature;
    sp->top_p = top_p;
    rng_seed(&sp->rng, seed);
    sp->candidates = xmalloc((size_t)V * sizeof(ProbIndex));
}

void sampler_free(Sampler *sp) { free(sp->candidates); sp->candidates = NULL; }

void softmax_inplace(float *x, int n) {
    float mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++) mx = fmax(mx, x[i]);
    for (int i = 0; i < n; i++) { x[i] = exp(x[i] - mx); sum += x[i]; }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

// Index i with probability probs[i], given coin uniform in [0, 1).
int sample_multinomial(const float *probs, int n, float coin) {
    float cdf = 0;
    for (int i = 0; i < n; i++) {
        cdf += probs[i];
        if (coin < cdf) return i;
    }
    return n - 1;  // rounding
}

// Larger probability first; equal ones by index, so the order (and the sample) is deterministic.
int prob_index_compare(const void *a, const void *b) {
    const ProbIndex *x = a, *y = b;
    if (x->prob != y->prob) return x->prob > y->prob ? -1 : 1;
    return x->index - y->index;
}

// Nucleus sampling: the smallest set of most likely tokens whose mass exceeds top_p. A token with
// probability below (1 - top_p) / (n - 1) can never be in it, so only the others are sorted.
int sample_top_p(const float *probs, int n, float top_p, ProbIndex *cand, float coin) {
    float cutoff = (1 - top_p) / (n - 1);
    int n_cand = 0;
    for (int i = 0; i < n; i++)
        if (probs[i] >= cutoff) cand[n_cand++] = (ProbIndex){probs[i], i};
    if (n_cand == 0) return argmax(probs, n);  // a tiny top_p over a flat distribution: the top token
    qsort(cand, n_cand, sizeof *cand, prob_index_compare);
    float mass = 0;
    int last = n_cand - 1;
    for (int i = 0; i < n_cand; i++) {
        mass += cand[i].prob;
        if (mass > top_p) { last = i; break; }
    }
    float r = coin * mass, cdf = 0;
    for (int i = 0; i <= last; i++) {
        cdf += cand[i].prob;
        if (r < cdf) return cand[i].index;
    }
    return cand[last].index;
}

// Samples the next token from logits (V), which it overwrites with probabilities.
int sampler_sample(Sampler *sp, float *logits) {
    int best = argmax(logits, sp->V);
    if (sp->temperature == 0) return best;
    // (x - max) / temperature <= 0: no overflow to inf (and then NaN) however small the temperature
    float mx = logits[best];
    for (int i = 0; i < sp->V; i++) logits[i] = (logits[i] - mx) / sp->temperature;
    softmax_inplace(logits, sp->V);
    float coin = rng_uniform(&sp->rng);
    if (sp->top_p <= 0 || sp->top_p >= 1) return sample_multinomial(logits, sp->V, coin);
    return sample_top_p(logits, sp->V, sp->top_p, sp->candidates, coin);
}

// ----------------------------------------------------------------------------
// generation

// Called for every generated token with the trace of the pass that produced it.
typedef void (*TokenCallback)(void *ctx, int token, const TokenTrace *tr);

typedef struct {
    int n_generated;              // tokens sampled (the last may be TOKEN_EOT)
    int prefill_steps;            // steps the prompt ran
    double prefill_seconds, decode_seconds;
    long long decode_passes;      // decode_token calls
    long long layer_steps;        // layer applications in decode_token
} GenStats;

double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Prefills prompt[0..n_prompt) and samples up to max_new tokens into out, stopping after
// TOKEN_EOT or at the end of s's context. s must have been initialised with n_prefill = n_prompt.
// traces (max_new) may be NULL. Returns 0 or -1 (ouro_error set).
int generate_text(Model *m, RunState *s, Sampler *sp, const ExitPolicy *pol, const int *prompt, int n_prompt,
             int max_new, int *out, TokenTrace *traces, TokenCallback fn, void *ctx, GenStats *st) {
    memset(st, 0, sizeof *st);
    TokenTrace tr;
    memset(&tr, 0, sizeof tr);
    double start = seconds_now();
    if (prefill(m, s, pol, prompt, n_prompt, &tr) < 0) return -1;
    acts_free(&m->net);  // the prompt's activations are no longer needed
    st->prefill_steps = s->n_steps;
    st->prefill_seconds = seconds_now() - start;
    start = seconds_now();
    long long steps_before = s->layer_steps;
    int pos = n_prompt - 1;
    for (int i = 0; i < max_new; i++) {
        int next = sampler_sample(sp, s->logits);
        out[st->n_generated++] = next;
        if (traces) traces[i] = tr;
        if (fn) fn(ctx, next, &tr);
        if (next == TOKEN_EOT || i + 1 == max_new || pos + 1 >= s->seq_cap) break;
        pos++;
        memset(&tr, 0, sizeof tr);
        if (decode_token(m, s, pol, next, pos, &tr) < 0) return -1;
        st->decode_passes++;
    }
    st->decode_seconds = seconds_now() - start;
    st->layer_steps = s->layer_steps - steps_before;
    return 0;
}

// ----------------------------------------------------------------------------
// evaluation

typedef struct {
    ExitPolicy pol;
    KvStrategy kv;
    int every_step;     // 1: read the head after every step (CE at each static depth)
} EvalPass;

typedef struct {
    double ce;                      // mean CE at the exit step
    double ce_step[OURO_MAX_STEPS]; // every_step: mean CE after each step
    double depth;                   // mean steps run per token (measured from layer-steps)
    double seconds;
    long long layer_steps, tokens;
} EvalScores;

// CE of one row of logits (V) against target, in double.
double cross_entropy(const float *logits, int V, int target) {
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++) mx = fmax(mx, (double)logits[i]);
    for (int i = 0; i < V; i++) sum += exp((double)logits[i] - mx);
    return mx + log(sum) - logits[target];
}

// Decodes every window of tokens[0..n) (windows of max_seq_len inputs, each with its next token
// as target) token by token from position 0, with teacher forcing. Windows run in parallel; the
// per-window sums are added in window order, so the result is the same for any thread count.
int eval_pass(Model *m, const uint16_t *tokens, size_t n, const EvalPass *ep, EvalScores *res) {
    const Config *c = &m->cfg;
    int S = c->max_seq_len, V = c->V, n_steps = policy_max_steps(&ep->pol, c->T);
    memset(res, 0, sizeof *res);
    if (n < 2) return fail("eval", "need at least 2 tokens, got %zu", n);
    if (n_steps < 1 || n_steps > 2 * c->T) return fail("eval", "%d steps: must be in [1, 2T = %d]", n_steps, 2 * c->T);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] >= V) return fail("eval", "token %u at position %zu is outside the vocabulary [0, %d)", tokens[i], i, V);
    size_t n_windows = (n - 1 + S - 1) / S;
    // per window: [0] CE sum at the exit step, [1..n_steps] CE sums after each step, then layer-steps
    size_t stride = (size_t)n_steps + 2;
    double *sums = xcalloc(n_windows * stride, sizeof(double));
    int failed = 0;
    double start = seconds_now();
    #pragma omp parallel
    {
        RunState s;  // cannot fail: the step count was checked above, and a window is at most S positions
        int ok = runstate_init(&s, m, ep->kv, n_steps, 0, n - 1 < (size_t)S ? (int)(n - 1) : S, ep->every_step) == 0;
        #pragma omp for schedule(dynamic)
        for (size_t w = 0; w < n_windows; w++) {
            if (!ok) continue;
            size_t first = w * S, len = n - 1 - first < (size_t)S ? n - 1 - first : (size_t)S;
            double *out = sums + w * stride;
            TokenTrace tr;
            s.layer_steps = 0;
            for (size_t i = 0; i < len && ok; i++) {
                int target = tokens[first + i + 1];
                if (decode_token(m, &s, &ep->pol, tokens[first + i], (int)i, &tr) < 0) { ok = 0; break; }
                out[0] += cross_entropy(s.logits, V, target);
                if (ep->every_step)
                    for (int t = 0; t < tr.exit_step; t++) out[1 + t] += cross_entropy(s.step_logits + (size_t)t * V, V, target);
            }
            out[stride - 1] = (double)s.layer_steps;
        }
        if (!ok) {
            #pragma omp atomic write
            failed = 1;
        }
        runstate_free(&s);
    }
    if (failed) { free(sums); return -1; }
    for (size_t w = 0; w < n_windows; w++) {
        const double *sw = sums + w * stride;
        res->ce += sw[0];
        for (int t = 0; t < n_steps; t++) res->ce_step[t] += sw[1 + t];
        res->layer_steps += (long long)sw[stride - 1];
    }
    res->tokens = (long long)(n - 1);
    res->ce /= res->tokens;
    for (int t = 0; t < n_steps; t++) res->ce_step[t] /= res->tokens;
    res->depth = (double)res->layer_steps / c->L / res->tokens;
    res->seconds = seconds_now() - start;
    free(sums);
    return 0;
}

typedef struct {
    const Tokenizer *tok;
    uint16_t *tokens;
    size_t n, cap, want;
} EvalText;

// StoryFn: encodes one story and appends TOKEN_EOT (as prepare's encoder does); stops when enough.
int eval_add_story(void *ctx, const char *story, size_t len) {
    EvalText *et = ctx;
    if (et->n + len + 1 > et->cap) {
        et->cap = 2 * (et->n + len + 1);
        et->tokens = realloc(et->tokens, et->cap * sizeof *et->tokens);
        if (!et->tokens) die("out of memory encoding the evaluation text");
    }
    et->n += tokenizer_encode(et->tok, story, len, et->tokens + et->n);
    et->tokens[et->n++] = TOKEN_EOT;
    return et->n >= et->want ? 1 : 0;
}

// The first max_tokens + 1 tokens of path (a .bin shard, or text). Returns 0 or -1.
int eval_load_tokens(const Model *m, const char *path, size_t max_tokens, uint16_t **tokens, size_t *n) {
    if (path_has_suffix(path, ".bin")) {
        int V = 0;
        if (shard_read(path, tokens, n, &V)) return -1;
        if (V != m->cfg.V) {
            free(*tokens);
            return fail(path, "token shard of vocabulary %d, the model's is V=%d (use the model's tokenizer)", V, m->cfg.V);
        }
    } else {
        if (!m->has_tokenizer) return fail(path, "the model export has no tokenizer: evaluate on a .bin token shard");
        EvalText et = {.tok = &m->tokenizer, .want = max_tokens + 1};
        StoryStats st;
        memset(&st, 0, sizeof st);
        if (read_stories(path, eval_add_story, &et, &st)) { free(et.tokens); return -1; }
        *tokens = et.tokens;
        *n = et.n;
    }
    if (*n > max_tokens + 1) *n = max_tokens + 1;
    if (*n < 2) {
        free(*tokens);
        return fail(path, "fewer than 2 tokens: nothing to evaluate (a text file's last story counts only "
                    "when the file ends with a newline)");
    }
    return 0;
}

void eval_or_die(Model *m, const uint16_t *tokens, size_t n, const EvalPass *ep, EvalScores *r) {
    if (eval_pass(m, tokens, n, ep, r)) die("%s", ouro_error);
}

// One row per threshold and KV strategy for an adaptive exit (Q-exit or hidden-state difference):
// the measured mean depth, the layer computations saved against T, and the CE. ce_T: the CE of
// each strategy at static depth T.
void eval_adaptive_table(Model *m, const uint16_t *tokens, size_t n, ExitKind kind, const double *values,
                         int n_values, const double *ce_T, double *total_seconds) {
    int T = m->cfg.T, L = m->cfg.L;
    if (kind == EXIT_Q) printf("\nQ-exit (depth: mean steps per token; saved: layer computations skipped vs T)\n  q     ");
    else printf("\nhidden-state difference ||h_t - h_(t-1)|| < eps (depth, saved: as above)\n  eps   ");
    printf("kv     depth   saved      CE       ppl   CE - static T\n");
    for (int i = 0; i < n_values; i++)
        for (int k = 0; k < N_KV_STRATEGIES; k++) {
            EvalScores r;
            if (kind == EXIT_Q && values[i] == 1) {  // q = 1 runs every token for T steps: static T
                r.ce = ce_T[k];
                r.depth = T;
                r.layer_steps = (long long)T * L * (long long)(n - 1);
                r.tokens = (long long)(n - 1);
            } else {
                EvalPass ep = {.pol = {.kind = kind, .q = values[i], .eps = values[i]}, .kv = (KvStrategy)k};
                eval_or_die(m, tokens, n, &ep, &r);
                *total_seconds += r.seconds;
            }
            double saved = 1 - (double)r.layer_steps / ((double)T * L * r.tokens);
            printf("  %-4g  %-5s  %5.2f  %5.1f%%  %6.4f  %8.2f   %+8.4f\n", values[i], kv_names[k], r.depth,
                   100 * saved, r.ce, exp(r.ce), r.ce - ce_T[KV_FULL]);
        }
}

// The trade-off tables (see the top comment): q_list the Q-exit thresholds, eps_list (may be
// empty) the hidden-state difference thresholds.
void run_eval(Model *m, const char *path, size_t max_tokens, const double *q_list, int n_q,
              const double *eps_list, int n_eps) {
    const Config *c = &m->cfg;
    int T = c->T;
    uint16_t *tokens = NULL;
    size_t n = 0;
    if (eval_load_tokens(m, path, max_tokens, &tokens, &n)) die("%s", ouro_error);
    size_t n_windows = (n - 1 + c->max_seq_len - 1) / c->max_seq_len;
    printf("eval %s: %zu tokens scored in %zu windows of up to %d, each decoded token by token from position 0\n",
           path, n - 1, n_windows, c->max_seq_len);
    double total_seconds = 0;

    // static depths 1..2T: one decode at 2T steps with the head read after every step
    EvalScores r;
    EvalPass ep = {.pol = {.kind = EXIT_STATIC, .n = 2 * T}, .kv = KV_FULL, .every_step = 1};
    eval_or_die(m, tokens, n, &ep, &r);
    total_seconds += r.seconds;
    printf("\nstatic depth (KV full)\n  steps      CE       ppl\n");
    for (int t = 0; t < 2 * T; t++)
        printf("  %5d  %6.4f  %8.2f%s\n", t + 1, r.ce_step[t], exp(r.ce_step[t]),
               t + 1 == T ? "   trained T" : t + 1 > T ? "   extrapolation" : "");

    // each KV strategy at full depth T
    double ce_T[N_KV_STRATEGIES];
    printf("\nKV strategies at static depth T=%d (cache memory for %d decoded positions)\n", T, c->max_seq_len);
    printf("  kv       memory       CE       ppl   CE - full\n");
    for (int k = 0; k < N_KV_STRATEGIES; k++) {
        ep = (EvalPass){.pol = {.kind = EXIT_STATIC, .n = T}, .kv = (KvStrategy)k};
        eval_or_die(m, tokens, n, &ep, &r);
        total_seconds += r.seconds;
        ce_T[k] = r.ce;
        printf("  %-5s  %7.2f MB  %6.4f  %8.2f   %+8.4f\n", kv_names[k], kv_cache_bytes(c, (KvStrategy)k, T, 0, c->max_seq_len) / 1048576.0,
               r.ce, exp(r.ce), r.ce - ce_T[KV_FULL]);
    }

    eval_adaptive_table(m, tokens, n, EXIT_Q, q_list, n_q, ce_T, &total_seconds);
    if (n_eps) eval_adaptive_table(m, tokens, n, EXIT_HDIFF, eps_list, n_eps, ce_T, &total_seconds);
    fprintf(stderr, "eval took %.1f s\n", total_seconds);
    free(tokens);
}

// ----------------------------------------------------------------------------
// printing tokens

// Writes a token's bytes, dropping control bytes other than newline and tab (raw bytes from a
// byte-level tokenizer could otherwise drive the terminal).
void write_piece(FILE *f, const char *piece, int n) {
    for (int i = 0; i < n; i++) {
        unsigned char b = (unsigned char)piece[i];
        if (b >= 32 || b == '\n' || b == '\t') fputc(b, f);
    }
}

// ANSI colour of exit step n: six colours from "shallow" to "deep", bold for steps 7..12, and so on.
void depth_colour(char *buf, size_t size, int n) {
    static const int palette[6] = {32, 36, 34, 35, 33, 31};  // green cyan blue magenta yellow red
    snprintf(buf, size, "\033[%s%dm", ((n - 1) / 6) % 2 ? "1;" : "", palette[(n - 1) % 6]);
}

typedef struct {
    const Tokenizer *tok;
    int show_depth, tty;
} PrintCtx;

void print_token(void *ctx, int token, const TokenTrace *tr) {
    const PrintCtx *pc = ctx;
    if (token == TOKEN_EOT) { fflush(stdout); return; }
    int nbytes;
    const char *piece = tokenizer_piece(pc->tok, token, &nbytes);
    if (pc->show_depth && pc->tty) {
        char colour[16];
        depth_colour(colour, sizeof colour, tr->exit_step);
        fputs(colour, stdout);
        write_piece(stdout, piece, nbytes);
        fputs("\033[0m", stdout);
    } else if (pc->show_depth) {
        fputc('[', stdout);
        write_piece(stdout, piece, nbytes);
        printf("|%d]", tr->exit_step);
    } else {
        write_piece(stdout, piece, nbytes);
    }
    fflush(stdout);
}

// The token's text with newlines, tabs, quotes and other control bytes escaped, in quotes.
void quoted_piece(const Tokenizer *tok, int token, char *buf, size_t size) {
    int nbytes, k = 0;
    const char *piece = tokenizer_piece(tok, token, &nbytes);
    buf[k++] = '"';
    for (int i = 0; i < nbytes && k + 6 < (int)size; i++) {
        unsigned char b = (unsigned char)piece[i];
        if (b == '\n') k += snprintf(buf + k, size - k, "\\n");
        else if (b == '\t') k += snprintf(buf + k, size - k, "\\t");
        else if (b == '"' || b == '\\') k += snprintf(buf + k, size - k, "\\%c", b);
        else if (b < 32 || b == 127) k += snprintf(buf + k, size - k, "\\x%02x", b);
        else buf[k++] = (char)b;
    }
    buf[k++] = '"';
    buf[k] = 0;
}

void print_depth_table(const Model *m, const int *tokens, const TokenTrace *traces, int n, int first_pos) {
    int T = m->cfg.T;
    printf("\n  pos  token                     exit");
    for (int t = 1; t <= T; t++) printf("    p(%d)", t);
    printf("\n");
    for (int i = 0; i < n; i++) {
        char piece[160];
        quoted_piece(&m->tokenizer, tokens[i], piece, sizeof piece);
        printf("%5d  %-24s  %4d", first_pos + i, piece, traces[i].exit_step);
        for (int t = 1; t <= T; t++) {
            if (t <= traces[i].exit_step) printf("  %6.4f", traces[i].p[t - 1]);
            else printf("  %6s", "-");  // never computed: the token left before step t
        }
        printf("\n");
    }
}

// ----------------------------------------------------------------------------
// main

#ifndef TESTING
static void run_usage(FILE *f) {
    fprintf(f,
        "usage: ./run model.bin [options]\n"
        "Generates text from a LoopLM exported by train.c, or evaluates it, with exits that skip compute.\n"
        "\n"
        "generation:\n"
        "  -i, --prompt TEXT       prompt (default: empty: a new story); <|endoftext|> is prepended\n"
        "  -n, --tokens N          tokens to generate (default 256; the context ends at max_seq_len)\n"
        "  -t, --temperature F     0 = greedy (default 1.0)\n"
        "  -p, --top-p F           nucleus sampling in (0, 1); 0 or 1 = the whole distribution (default 0.9)\n"
        "  -s, --seed N            sampling seed (default 42; the same seed gives the same text)\n"
        "exit policy (one of; default: static depth T):\n"
        "  -D, --depth N           static: exactly N steps, 1..2T (N > T extrapolates)\n"
        "  -q, --q-exit Q          Q-exit: stop at the first step whose exit CDF >= Q, in [0, 1]\n"
        "  -E, --hdiff EPS         stop when ||h_t - h_(t-1)||_2 < EPS (at most T steps); h is\n"
        "                          normed, ||h||_2 ~ sqrt(d): 11 for d = 128\n"
        "KV cache of decoded positions (the prompt always keeps every step's cache):\n"
        "  -k, --kv STRATEGY       full (default; an exited token's missing steps copy its exit step),\n"
        "                          first, last or avg (one shared cache per layer)\n"
        "seeing the depth:\n"
        "      --show-depth        colour every generated token by its exit step (brackets [text|n]\n"
        "                          when stdout is not a terminal)\n"
        "      --depth-table       after the text: position, token, exit step and p(t) for t = 1..T\n"
        "evaluation:\n"
        "      --eval FILE         CE / perplexity tables on a text file or a .bin token shard\n"
        "      --eval-tokens N     tokens to score (default 2048)\n"
        "      --eval-q LIST       Q-exit thresholds, comma-separated (default 0.2,0.4,0.6,0.8,0.9,1;\n"
        "                          q = 1 is static T and repeats its numbers)\n"
        "      --eval-eps LIST     also the hidden-state difference exit at these thresholds\n"
        "other:\n"
        "      --threads N         OpenMP threads (default: all cores)\n"
        "  -h, --help              this text\n"
        "\n"
        "examples:\n"
        "  ./run out/model.bin -i \"Once upon a time\" -n 200 -t 0.8\n"
        "  ./run out/model.bin -i \"Lily saw a cat\" -q 0.5 --show-depth --depth-table -t 0\n"
        "  ./run out/model.bin -D 8 -k last                 # twice the trained depth, last-step cache\n"
        "  ./run out/model.bin --eval out/data/val.bin          # a token shard, or any text file\n");
}

static const char *flag_arg(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) die("%s needs a value (see ./run --help)", argv[*i]);
    return argv[++*i];
}

static void parse_or_die(int status) {
    if (status) die("%s (see ./run --help)", ouro_error);
}

// "0.2,0.4" -> list of values in [lo, hi]; returns the count.
static int parse_list(const char *flag, const char *s, double lo, double hi, double *list, int max) {
    int n = 0;
    char buf[512];
    if (strlen(s) >= sizeof buf) die("%s: list too long", flag);
    strcpy(buf, s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (n == max) die("%s: at most %d thresholds", flag, max);
        parse_or_die(parse_double(flag, tok, lo, hi, &list[n++]));
    }
    if (!n) die("%s: empty list", flag);
    return n;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { run_usage(stdout); return 0; }
    if (argc < 2 || argv[1][0] == '-') { run_usage(stderr); return 1; }
    const char *model_path = argv[1], *prompt = "", *eval_path = NULL;
    int max_new = 256, n_policies = 0, show_depth = 0, depth_table = 0, depth = 0, threads = 0, n_q = 6, n_eps = 0;
    long seed = 42, eval_tokens = 2048;
    double temperature = 1.0, top_p = 0.9, q = 0, eps = 0;
    double q_list[32] = {0.2, 0.4, 0.6, 0.8, 0.9, 1.0}, eps_list[32];
    ExitKind kind = EXIT_STATIC;
    KvStrategy kv = KV_FULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-i") || !strcmp(a, "--prompt")) prompt = flag_arg(argc, argv, &i);
        else if (!strcmp(a, "-n") || !strcmp(a, "--tokens")) parse_or_die(parse_int(a, flag_arg(argc, argv, &i), 1, 1 << 20, &max_new));
        else if (!strcmp(a, "-t") || !strcmp(a, "--temperature")) parse_or_die(parse_double(a, flag_arg(argc, argv, &i), 0, 100, &temperature));
        else if (!strcmp(a, "-p") || !strcmp(a, "--top-p")) parse_or_die(parse_double(a, flag_arg(argc, argv, &i), 0, 1, &top_p));
        else if (!strcmp(a, "-s") || !strcmp(a, "--seed")) parse_or_die(parse_long(a, flag_arg(argc, argv, &i), 0, LONG_MAX, &seed));
        else if (!strcmp(a, "-D") || !strcmp(a, "--depth")) {
            parse_or_die(parse_int(a, flag_arg(argc, argv, &i), 1, OURO_MAX_STEPS, &depth));
            kind = EXIT_STATIC; n_policies++;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--q-exit")) {
            parse_or_die(parse_double(a, flag_arg(argc, argv, &i), 0, 1, &q));
            kind = EXIT_Q; n_policies++;
        } else if (!strcmp(a, "-E") || !strcmp(a, "--hdiff")) {
            parse_or_die(parse_double(a, flag_arg(argc, argv, &i), 0, 1e30, &eps));
            kind = EXIT_HDIFF; n_policies++;
        } else if (!strcmp(a, "-k") || !strcmp(a, "--kv")) {
            const char *v = flag_arg(argc, argv, &i);
            int k = 0;
            while (k < N_KV_STRATEGIES && strcmp(v, kv_names[k])) k++;
            if (k == N_KV_STRATEGIES) die("%s: unknown KV strategy '%s' (full, first, last or avg)", a, v);
            kv = (KvStrategy)k;
        }
        else if (!strcmp(a, "--show-depth")) show_depth = 1;
        else if (!strcmp(a, "--depth-table")) depth_table = 1;
        else if (!strcmp(a, "--eval")) eval_path = flag_arg(argc, argv, &i);
        else if (!strcmp(a, "--eval-tokens")) parse_or_die(parse_long(a, flag_arg(argc, argv, &i), 1, 1L << 30, &eval_tokens));
        else if (!strcmp(a, "--eval-q")) n_q = parse_list(a, flag_arg(argc, argv, &i), 0, 1, q_list, 32);
        else if (!strcmp(a, "--eval-eps")) n_eps = parse_list(a, flag_arg(argc, argv, &i), 0, 1e30, eps_list, 32);
        else if (!strcmp(a, "--threads")) parse_or_die(parse_int(a, flag_arg(argc, argv, &i), 1, 1024, &threads));
        else die("unknown flag '%s' (see ./run --help)", a);
    }
    if (n_policies > 1) die("give at most one exit policy (--depth, --q-exit or --hdiff)");
#ifdef _OPENMP
    if (threads) omp_set_num_threads(threads);
#endif

    Model model;
    if (model_load(&model, model_path)) die("%s", ouro_error);
    const Config *c = &model.cfg;
    fprintf(stderr, "%s: V=%d d=%d H=%d F=%d L=%d T=%d max_seq_len=%d%s, %zu weights (memory-mapped)\n", model_path,
            c->V, c->d, c->H, c->F, c->L, c->T, c->max_seq_len, c->tied ? " tied" : "", model.net.n_params);
    if (eval_path) {
        run_eval(&model, eval_path, (size_t)eval_tokens, q_list, n_q, eps_list, n_eps);
        model_free(&model);
        return 0;
    }

    if (!model.has_tokenizer) die("%s: the export has no tokenizer, so it cannot generate text (--eval on a .bin shard works)", model_path);
    if (kind == EXIT_STATIC && depth == 0) depth = c->T;
    if (depth > 2 * c->T) die("--depth %d: must be in [1, 2T = %d]", depth, 2 * c->T);
    ExitPolicy pol = {.kind = kind, .n = depth, .q = q, .eps = eps};

    // the prompt: <|endoftext|> (the training data's story separator, so "a story starts here"),
    // then the encoded text
    size_t len = strlen(prompt);
    int *prompt_tokens = xmalloc((len + 1) * sizeof(int));
    uint16_t *encoded = xmalloc((len + 1) * sizeof(uint16_t));
    int n_prompt = 0;
    prompt_tokens[n_prompt++] = TOKEN_EOT;
    size_t n_enc = tokenizer_encode(&model.tokenizer, prompt, len, encoded);
    for (size_t i = 0; i < n_enc; i++) prompt_tokens[n_prompt++] = encoded[i];
    free(encoded);
    if (n_prompt > c->max_seq_len) die("the prompt is %d tokens; the model's context is max_seq_len = %d", n_prompt, c->max_seq_len);
    if (max_new > c->max_seq_len - n_prompt + 1) {
        max_new = c->max_seq_len - n_prompt + 1;
        fprintf(stderr, "note: the context ends at max_seq_len = %d: at most %d new tokens\n", c->max_seq_len, max_new);
    }

    int n_steps = policy_max_steps(&pol, c->T);
    // the caches hold this run's positions only (the prompt and the new tokens), not all of
    // max_seq_len: a long-context model asked for a few tokens needs little memory
    int context = n_prompt + max_new < c->max_seq_len ? n_prompt + max_new : c->max_seq_len;
    RunState state;
    if (runstate_init(&state, &model, kv, n_steps, n_prompt, context, 0)) die("%s", ouro_error);
    Sampler sampler;
    sampler_init(&sampler, c->V, (float)temperature, (float)top_p, (uint64_t)seed);
    char policy_text[128];
    policy_describe(&pol, c->T, policy_text, sizeof policy_text);
    fprintf(stderr, "exit: %s; KV cache (%d steps, %d prompt positions, context %d):", policy_text, n_steps, n_prompt, context);
    for (int k = 0; k < N_KV_STRATEGIES; k++)
        fprintf(stderr, " %s %.2f MB%s", kv_names[k], kv_cache_bytes(c, (KvStrategy)k, n_steps, n_prompt, context) / 1048576.0,
                k == (int)kv ? " (used)" : "");
    fprintf(stderr, "\n");

    PrintCtx pc = {.tok = &model.tokenizer, .show_depth = show_depth, .tty = isatty(fileno(stdout))};
    if (show_depth) {
        if (pc.tty) {
            fprintf(stderr, "exit step:");
            for (int n = 1; n <= n_steps; n++) {
                char colour[16];
                depth_colour(colour, sizeof colour, n);
                fprintf(stderr, " %s%d\033[0m", colour, n);
            }
            fprintf(stderr, "\n");
        } else {
            fprintf(stderr, "depth display: [text|n] is a generated token and the exit step n of the pass that chose it\n");
        }
    }
    write_piece(stdout, prompt, (int)len);
    fflush(stdout);
    int *generated = xmalloc((size_t)max_new * sizeof(int));
    TokenTrace *traces = depth_table ? xmalloc((size_t)max_new * sizeof(TokenTrace)) : NULL;
    GenStats st;
    if (generate_text(&model, &state, &sampler, &pol, prompt_tokens, n_prompt, max_new, generated, traces, print_token, &pc, &st))
        die("%s", ouro_error);
    printf("\n");
    if (depth_table) print_depth_table(&model, generated, traces, st.n_generated, n_prompt);
    fflush(stdout);   // the text ends before the statistics start, also when both go to one file

    fprintf(stderr, "prefill: %d tokens x %d steps in %.3f s\n", n_prompt, st.prefill_steps, st.prefill_seconds);
    if (st.decode_passes > 0) {
        double steps = (double)st.layer_steps / c->L / st.decode_passes;
        char versus_T[96];
        if (steps <= c->T) snprintf(versus_T, sizeof versus_T, "%.1f%% of the layer computations saved", 100 * (1 - steps / c->T));
        else snprintf(versus_T, sizeof versus_T, "%.0f%% more layer computations than T", 100 * (steps / c->T - 1));
        fprintf(stderr, "decode: %lld tokens in %.3f s = %.1f tok/s, %.2f steps per token on average (T = %d: %s)\n",
                st.decode_passes, st.decode_seconds, st.decode_passes / st.decode_seconds, steps, c->T, versus_T);
    }
    free(traces);
    free(generated);
    free(prompt_tokens);
    sampler_free(&sampler);
    runstate_free(&state);
    model_free(&model);
    return 0;
}
#endif
