// train.c: train looped language models on the CPU.
//
//   ./train --help                     every flag with its default
//   ./train                            Stage I on out/data/{train,val}.bin with out/data/tok.bin
//   ./train --stage 2 --init out/ckpt.bin --ckpt out/ckpt_stage2.bin --steps 300
//   ./train --resume                   continue from --ckpt exactly where it stopped
//
// One training step: draw B random windows of S+1 tokens from the train shard (seeded RNG), run
// ouro_forward / ouro_backward, clip the gradient norm, take an AdamW step with warmup + cosine
// learning rate. Every --eval-every steps the model is evaluated on a fixed set of validation
// windows (the same ones every time, so numbers compare across runs), at every step t = 1..2T.
//
// Resuming reproduces an uninterrupted run bit for bit: the checkpoint holds the parameters,
// the AdamW moments, the step, and the RNG state that draws the batches (the data position).
// Pass the same flags when resuming; the schedule depends on --steps.
#include "ouro.c"
#include "tinystories/data.c"
#include "plot.c"
#include <limits.h>
#include <time.h>

// The Q-exit thresholds evaluated (and logged); the printed table shows the PRINTED ones.
static const double Q_GRID[] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0};
enum { N_Q = sizeof Q_GRID / sizeof Q_GRID[0] };
static const double Q_PRINTED[] = {0.5, 0.7, 0.9, 1.0};

typedef struct {
    // data
    const char *train_path, *val_path, *tokenizer_path;
    // model shape (V comes from the tokenizer)
    Config model;
    // batch and optimisation
    int B, S, steps, warmup;
    double lr, min_lr_frac, weight_decay, clip;
    // objective
    int stage;
    double beta, k, gamma;
    const char *init_path;       // Stage II starts from this (Stage I) checkpoint
    // evaluation, logging, files
    int eval_every, eval_batches, log_every, ckpt_every;
    int stop_at;                 // end this invocation at this step (checkpointed), 0 = run to --steps
    const char *ckpt_path, *export_path, *log_path, *plot_dir, *dump_path;
    int resume, overwrite, quiet;
    uint64_t seed;
    int threads;
} TrainOptions;

TrainOptions options_default(void) {
    TrainOptions o = {
        .train_path = "out/data/train.bin", .val_path = "out/data/val.bin", .tokenizer_path = "out/data/tok.bin",
        .model = {.V = 0, .d = 128, .H = 4, .F = 344, .L = 2, .T = 4, .max_seq_len = 0, .tied = 0,
                  .rope_theta = 10000.0f, .norm_eps = 1e-6f},
        .B = 8, .S = 128, .steps = 1000, .warmup = 50,
        .lr = 3e-3, .min_lr_frac = 0.1, .weight_decay = 0.1, .clip = 1.0,
        .stage = 1, .beta = 0.1, .k = 50, .gamma = 0.005, .init_path = NULL,
        .eval_every = 100, .eval_batches = 8, .log_every = 10, .ckpt_every = 250, .stop_at = 0,
        .ckpt_path = "out/ckpt.bin", .export_path = NULL, .log_path = NULL, .plot_dir = NULL, .dump_path = NULL,
        .resume = 0, .overwrite = 0, .quiet = 0, .seed = 1337, .threads = 0,
    };
    return o;
}

// What one evaluation measured (means over the fixed validation windows).
typedef struct {
    int n_steps;
    double ce[OURO_MAX_STEPS];        // CE at static depth t = 1..2T
    double p[OURO_MAX_T];             // mean exit probability p(t)
    double loss, expected_ce, entropy, mean_exit;
    double q_ce[N_Q], q_depth[N_Q];   // Q-exit CE and mean depth for each Q_GRID threshold
    double bytes_per_token;           // of the validation targets, from the tokenizer's pieces
} EvalResult;

typedef struct {
    TrainOptions opt;
    Ouro model;
    Tokenizer tok;
    uint16_t *train_tokens, *val_tokens;
    size_t n_train, n_val;
    Rng rng;                  // draws the training windows: its state is the data position
    uint64_t batches_drawn;
    int *inputs, *targets;    // (B, S)
    double *losses;           // (steps) training loss of every step taken in this process
    double val_bytes_per_token;
    int have_first_eval, first_eval_step;
    EvalResult first_eval;    // this process's first evaluation (Stage II from --init: the Stage I gate)
} Trainer;

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// ----------------------------------------------------------------------------
// data

// Loads a shard and checks its vocabulary against the tokenizer's and its length against S.
int load_shard(const char *path, const Tokenizer *tok, int S, uint16_t **tokens, size_t *n) {
    int vocab;
    if (shard_read(path, tokens, n, &vocab)) return -1;
    if (vocab != tok->vocab_size) {
        free(*tokens);
        *tokens = NULL;
        return fail(path, "written with a %d-token vocabulary, the tokenizer has %d: encode it with the same tokenizer",
                    vocab, tok->vocab_size);
    }
    if (*n < (size_t)S + 1) {
        free(*tokens);
        *tokens = NULL;
        return fail(path, "only %zu tokens, a window needs S + 1 = %d", *n, S + 1);
    }
    return 0;
}

// Training batch: B windows of S+1 tokens at random offsets; targets are inputs shifted by one.
void next_batch(Trainer *tr) {
    int B = tr->opt.B, S = tr->opt.S;
    for (int b = 0; b < B; b++) {
        size_t start = (size_t)rng_below(&tr->rng, tr->n_train - S);
        for (int s = 0; s < S; s++) {
            tr->inputs[b * S + s] = tr->train_tokens[start + s];
            tr->targets[b * S + s] = tr->train_tokens[start + s + 1];
        }
    }
    tr->batches_drawn++;
}

// Validation batch `batch` of the fixed evaluation set: windows w = batch * B + b of the
// eval_batches * B, spread evenly over the shard.
void eval_batch(Trainer *tr, int batch) {
    int B = tr->opt.B, S = tr->opt.S;
    double n_windows = (double)tr->opt.eval_batches * B;   // up to 2^36: not an int
    for (int b = 0; b < B; b++) {
        double w = (double)batch * B + b;                    // < n_windows: start <= n_val - S - 1
        size_t start = (size_t)(w / n_windows * (tr->n_val - S - 1));
        for (int s = 0; s < S; s++) {
            tr->inputs[b * S + s] = tr->val_tokens[start + s];
            tr->targets[b * S + s] = tr->val_tokens[start + s + 1];
        }
    }
}

// Bytes the validation targets stand for (for bits per byte). <|endoftext|> counts as one byte,
// the separator it replaces.
double target_bytes(const Tokenizer *tok, const int *targets, int n) {
    double bytes = 0;
    for (int i = 0; i < n; i++) {
        int len = 1;
        if (targets[i] != TOKEN_EOT) tokenizer_piece(tok, targets[i], &len);
        bytes += len;
    }
    return bytes;
}

// ----------------------------------------------------------------------------
// evaluation

void evaluate(Trainer *tr, EvalResult *r) {
    Ouro *m = &tr->model;
    int T = m->cfg.T, B = tr->opt.B, S = tr->opt.S, nb = tr->opt.eval_batches;
    memset(r, 0, sizeof *r);
    r->n_steps = 2 * T;
    double bytes = 0;
    for (int batch = 0; batch < nb; batch++) {
        eval_batch(tr, batch);
        if (ouro_forward(m, tr->inputs, tr->targets, B, S, 2 * T, OURO_EVAL)) die("%s", ouro_error);
        const Metrics *mt = &m->metrics;
        for (int t = 0; t < 2 * T; t++) r->ce[t] += mt->ce[t] / nb;
        for (int t = 0; t < T; t++) r->p[t] += mt->p[t] / nb;
        r->loss += (tr->opt.stage == 2 ? mt->loss_stage2 : mt->loss_stage1) / nb;
        r->expected_ce += mt->expected_ce / nb;
        r->entropy += mt->entropy / nb;
        r->mean_exit += mt->mean_exit_step / nb;
        for (int i = 0; i < N_Q; i++) {
            double depth, ce = ouro_qexit_ce(m, Q_GRID[i], &depth);
            r->q_ce[i] += ce / nb;
            r->q_depth[i] += depth / nb;
        }
        bytes += target_bytes(&tr->tok, tr->targets, B * S);
    }
    r->bytes_per_token = bytes / ((double)nb * B * S);
}

double bits_per_byte(double ce_nats, double bytes_per_token) { return ce_nats / log(2.0) / bytes_per_token; }

int q_index(double q) {
    for (int i = 0; i < N_Q; i++)
        if (fabs(Q_GRID[i] - q) < 1e-9) return i;
    return N_Q - 1;
}

void print_eval(const Trainer *tr, const EvalResult *r, int step) {
    int T = tr->model.cfg.T;
    printf("eval step %d: val CE by step t (1..%d, extrapolation beyond T=%d):\n   ", step, 2 * T, T);
    for (int t = 0; t < 2 * T; t++) printf(" %s%.3f", t == T ? "|" : "", r->ce[t]);
    printf("\n    p(t):");
    for (int t = 0; t < T; t++) printf(" %.3f", r->p[t]);
    printf("   expected CE %.4f   entropy %.3f   mean exit step %.2f\n", r->expected_ce, r->entropy, r->mean_exit);
    printf("    bits per byte: %.4f at step T, %.4f expected (%.2f bytes/token)\n",
           bits_per_byte(r->ce[T - 1], r->bytes_per_token), bits_per_byte(r->expected_ce, r->bytes_per_token),
           r->bytes_per_token);
    printf("    Q-exit:    q   avg depth   CE\n");
    for (size_t i = 0; i < sizeof Q_PRINTED / sizeof *Q_PRINTED; i++) {
        int qi = q_index(Q_PRINTED[i]);
        printf("            %4.2f   %6.2f    %.4f\n", Q_GRID[qi], r->q_depth[qi], r->q_ce[qi]);
    }
}

// ----------------------------------------------------------------------------
// log (CSV): one row per evaluation and one per progress line, columns named in the header

void log_header(FILE *f, int T) {
    fprintf(f, "kind,stage,step,lr,loss,expected_ce,entropy,mean_exit,grad_norm,tok_per_s,bpb");
    for (int t = 1; t <= 2 * T; t++) fprintf(f, ",ce%d", t);
    for (int t = 1; t <= T; t++) fprintf(f, ",p%d", t);
    for (int i = 0; i < N_Q; i++) fprintf(f, ",qce_%g", Q_GRID[i]);
    for (int i = 0; i < N_Q; i++) fprintf(f, ",qdepth_%g", Q_GRID[i]);
    fprintf(f, "\n");
}

// A fresh log, or one appended to that is missing or empty, starts with the header.
FILE *log_open(const Trainer *tr, int fresh) {
    if (!tr->opt.log_path) return NULL;
    int empty = !file_exists(tr->opt.log_path) || file_size(tr->opt.log_path) <= 0;
    FILE *f = fopen(tr->opt.log_path, fresh ? "w" : "a");
    if (!f) die("%s: cannot open the log: %s", tr->opt.log_path, strerror(errno));
    if (fresh || empty) log_header(f, tr->model.cfg.T);
    return f;
}

void log_eval(FILE *f, const Trainer *tr, const EvalResult *r, int step, double lr) {
    if (!f) return;
    int T = tr->model.cfg.T;
    fprintf(f, "eval,%d,%d,%g,%.6f,%.6f,%.6f,%.4f,,,%.6f", tr->opt.stage, step, lr, r->loss, r->expected_ce,
            r->entropy, r->mean_exit, bits_per_byte(r->ce[T - 1], r->bytes_per_token));
    for (int t = 0; t < 2 * T; t++) fprintf(f, ",%.6f", r->ce[t]);
    for (int t = 0; t < T; t++) fprintf(f, ",%.6f", r->p[t]);
    for (int i = 0; i < N_Q; i++) fprintf(f, ",%.6f", r->q_ce[i]);
    for (int i = 0; i < N_Q; i++) fprintf(f, ",%.4f", r->q_depth[i]);
    fprintf(f, "\n");
    fflush(f);
}

void log_train(FILE *f, const Trainer *tr, int step, double lr, double grad_norm, double tok_per_s) {
    if (!f) return;
    const Metrics *mt = &tr->model.metrics;
    int T = tr->model.cfg.T;
    fprintf(f, "train,%d,%d,%g,%.6f,%.6f,%.6f,%.4f,%.4f,%.0f,", tr->opt.stage, step, lr,
            tr->opt.stage == 2 ? mt->loss_stage2 : mt->loss_stage1, mt->expected_ce, mt->entropy,
            mt->mean_exit_step, grad_norm, tok_per_s);
    for (int t = 0; t < 2 * T; t++) {
        if (t < T) fprintf(f, ",%.6f", mt->ce[t]);
        else fprintf(f, ",");
    }
    for (int t = 0; t < T; t++) fprintf(f, ",%.6f", mt->p[t]);
    for (int i = 0; i < 2 * N_Q; i++) fprintf(f, ",");
    fprintf(f, "\n");
}

// ----------------------------------------------------------------------------
// plots: read the CSV log back and draw four figures

typedef struct {
    int n_cols, n_rows;
    int skipped;        // lines that are not a train or eval row of n_cols cells (a cut-off write)
    char **names;       // (n_cols)
    char **kinds;       // (n_rows) "train" or "eval"
    double *values;     // (n_rows, n_cols), NAN where a cell is empty
} Table;

int table_col(const Table *t, const char *name) {
    for (int c = 0; c < t->n_cols; c++)
        if (strcmp(t->names[c], name) == 0) return c;
    return -1;
}

void table_free(Table *t) {
    for (int c = 0; c < t->n_cols; c++) free(t->names[c]);
    for (int r = 0; r < t->n_rows; r++) free(t->kinds[r]);
    free(t->names); free(t->kinds); free(t->values);
    memset(t, 0, sizeof *t);
}

int table_read(Table *t, const char *path) {
    memset(t, 0, sizeof *t);
    char *buf = NULL;
    size_t len = 0;
    if (read_file(path, (size_t)1 << 30, &buf, &len)) return -1;
    char *save_line, *line = strtok_r(buf, "\n", &save_line);
    if (!line) { free(buf); return fail(path, "empty log"); }
    for (char *p = line; *p; p++) t->n_cols += *p == ',';
    t->n_cols++;
    if (t->n_cols > 1024) { free(buf); return fail(path, "%d columns: not a training log", t->n_cols); }
    t->names = xcalloc(t->n_cols, sizeof(char *));
    char *cell = line;
    for (int c = 0; c < t->n_cols; c++) {  // every column named, the first one "kind"
        char *end = strchr(cell, ',');
        if (end) *end = 0;
        int unnamed = !*cell, not_a_log = c == 0 && strcmp(cell, "kind") != 0;
        if (unnamed || not_a_log) {
            table_free(t);
            free(buf);
            if (not_a_log) return fail(path, "not a training log: its first column is not \"kind\"");
            return fail(path, "column %d of the header has no name", c + 1);
        }
        t->names[c] = xstrdup(cell);
        cell = end ? end + 1 : cell;
    }
    size_t cap = 256;
    t->kinds = xmalloc(cap * sizeof(char *));
    t->values = xmalloc(cap * t->n_cols * sizeof(double));
    while ((line = strtok_r(NULL, "\n", &save_line))) {
        if (strncmp(line, "kind,", 5) == 0) continue;  // a repeated header (logs joined by hand)
        // Only whole rows are kept, so the table is at most ~8 bytes per byte of the file.
        int cells = 1;
        for (char *p = line; *p; p++) cells += *p == ',';
        if (cells != t->n_cols || (strncmp(line, "train,", 6) != 0 && strncmp(line, "eval,", 5) != 0)) {
            t->skipped++;
            continue;
        }
        if ((size_t)t->n_rows == cap) {
            cap *= 2;
            t->kinds = realloc(t->kinds, cap * sizeof(char *));
            t->values = realloc(t->values, cap * t->n_cols * sizeof(double));
            if (!t->kinds || !t->values) die("out of memory reading %s", path);
        }
        double *row = t->values + (size_t)t->n_rows * t->n_cols;
        char *p = line;
        for (int c = 0; c < t->n_cols; c++) {   // n_cols cells, checked above
            char *end = strchr(p, ',');
            if (end) *end = 0;
            if (c == 0) t->kinds[t->n_rows] = xstrdup(p);
            else row[c] = *p ? strtod(p, NULL) : NAN;
            p = end ? end + 1 : p;
        }
        t->n_rows++;
    }
    free(buf);
    return 0;
}

// Collects column `name` of the rows of one kind (and stage, if > 0) into x = step, y = value.
int table_series(const Table *t, const char *kind, int stage, const char *name, double *x, double *y) {
    int cs = table_col(t, "step"), cv = table_col(t, name), cst = table_col(t, "stage"), n = 0;
    if (cs < 0 || cv < 0) return 0;
    for (int r = 0; r < t->n_rows; r++) {
        const double *row = t->values + (size_t)r * t->n_cols;
        if (strcmp(t->kinds[r], kind) != 0 || (stage > 0 && row[cst] != stage) || !isfinite(row[cv])) continue;
        x[n] = row[cs];
        y[n++] = row[cv];
    }
    return n;
}

// The last (or first) eval row of a stage, or -1.
int table_eval_row(const Table *t, int stage, int last) {
    int cst = table_col(t, "stage"), found = -1;
    for (int r = 0; r < t->n_rows; r++)
        if (strcmp(t->kinds[r], "eval") == 0 && (stage <= 0 || t->values[(size_t)r * t->n_cols + cst] == stage)) {
            found = r;
            if (!last) break;
        }
    return found;
}

// x = 1..T and y = the columns prefix1..prefixT of one row (p1..pT, ce1..ceT): a quantity per
// recurrent step, from one evaluation.
void table_row_by_step(const Table *t, int row, const char *prefix, int T, double *x, double *y) {
    for (int s = 0; s < T; s++) {
        char col[16];
        snprintf(col, sizeof col, "%s%d", prefix, s + 1);
        x[s] = s + 1;
        y[s] = t->values[(size_t)row * t->n_cols + table_col(t, col)];
    }
}

// A column that the plots index rows by and the log lacks, or NULL. A log written by train has
// them all; anything else is rejected rather than read at column -1.
const char *missing_column(const Table *t, int T) {
    static char name[32];
    const char *fixed[] = {"stage", "step", "loss", "p1"};
    for (int i = 0; i < 4; i++)
        if (table_col(t, fixed[i]) < 0) return fixed[i];
    for (int s = 1; s <= T; s++)
        if (snprintf(name, sizeof name, "ce%d", s), table_col(t, name) < 0) return name;
    for (int i = 0; i < N_Q; i++) {
        if (snprintf(name, sizeof name, "qce_%g", Q_GRID[i]), table_col(t, name) < 0) return name;
        if (snprintf(name, sizeof name, "qdepth_%g", Q_GRID[i]), table_col(t, name) < 0) return name;
    }
    return NULL;
}

// Writes loss.svg, ce_by_step.svg, exit_distribution.svg and qexit_tradeoff.svg into dir.
int write_plots(const char *log_path, const char *dir) {
    Table t;
    if (table_read(&t, log_path)) return -1;
    if (t.skipped) fprintf(stderr, "%s: %d lines are not whole train or eval rows: skipped\n", log_path, t.skipped);
    int T = 0;  // the log has columns p1..pT
    for (char name[16]; T < OURO_MAX_T; T++) {
        snprintf(name, sizeof name, "p%d", T + 1);
        if (table_col(&t, name) < 0) break;
    }
    const char *missing = missing_column(&t, T);
    if (missing) {
        fail(log_path, "has no column \"%s\": not a log written by train", missing);
        table_free(&t);
        return -1;
    }
    mkdir(dir, 0755);
    size_t n = (size_t)t.n_rows + 1;
    double *xs = xcalloc(n * (2 * OURO_MAX_STEPS + 4), sizeof(double));
    double *ys = xcalloc(n * (2 * OURO_MAX_STEPS + 4), sizeof(double));
    char path[4096], names[2 * OURO_MAX_STEPS + 4][48];
    int err = 0;

    // 1. training loss (and validation loss) over steps, of Stage I: Stage II's loss is the gate's
    // alone, another quantity on another step count (drawn only for a log of Stage II alone)
    int stage = 1, k = table_series(&t, "train", 1, "loss", xs, ys);
    if (k == 0 && (k = table_series(&t, "train", 2, "loss", xs, ys)) > 0) stage = 2;
    Plot p = {.title = stage == 1 ? "Training loss (Stage I)" : "Training loss (Stage II: the exit gate's loss)",
              .xlabel = "training step", .ylabel = "loss (nats)"};
    plot_add(&p, "train loss", xs, ys, k, 0, 0);
    int k2 = table_series(&t, "eval", stage, "loss", xs + n, ys + n);
    plot_add(&p, "validation loss", xs + n, ys + n, k2, 0, 1);
    snprintf(path, sizeof path, "%s/loss.svg", dir);
    err |= plot_write_svg(&p, path);

    // 2. validation CE at each step t over training (Stage I rows): every t up to 2T when that
    // is at most 16 curves (T <= 8), else t = 1, 2, T/4, T/2, 3T/4, T, 3T/2, 2T
    p = (Plot){.title = "Validation CE at each recurrent step t", .xlabel = "training step", .ylabel = "CE (nats)"};
    int steps[2 * OURO_MAX_STEPS], n_steps = 0;
    if (T <= 8)
        for (int s = 1; s <= 2 * T; s++) steps[n_steps++] = s;
    else {
        int pick[8] = {1, 2, T / 4, T / 2, 3 * T / 4, T, 3 * T / 2, 2 * T};
        for (int i = 0; i < 8; i++)
            if (i == 0 || pick[i] > steps[n_steps - 1]) steps[n_steps++] = pick[i];
    }
    for (int i = 0; i < n_steps; i++) {
        int s = steps[i] - 1;
        char col[16];
        snprintf(col, sizeof col, "ce%d", s + 1);
        snprintf(names[s], sizeof names[s], s < T ? "t = %d" : "t = %d (beyond T)", s + 1);
        k = table_series(&t, "eval", 1, col, xs + n * s, ys + n * s);
        plot_add(&p, names[s], xs + n * s, ys + n * s, k, s >= T, 0);
    }
    snprintf(path, sizeof path, "%s/ce_by_step.svg", dir);
    err |= plot_write_svg(&p, path);

    // 3. the exit distribution p(t) at the last evaluation
    int last = table_eval_row(&t, 0, 1);
    p = (Plot){.title = "Exit distribution p(t), last evaluation", .xlabel = "recurrent step t", .ylabel = "mean p(t)", .bars = 1};
    if (last >= 0) {
        table_row_by_step(&t, last, "p", T, xs, ys);
        plot_add(&p, "p(t)", xs, ys, T, 0, 0);
    }
    snprintf(path, sizeof path, "%s/exit_distribution.svg", dir);
    err |= plot_write_svg(&p, path);

    // 4. the Q-exit trade-off: mean depth vs CE, for the last Stage I and Stage II gates,
    //    with the static depths 1..T for reference
    p = (Plot){.title = "Q-exit trade-off (validation)", .xlabel = "average depth (steps)", .ylabel = "CE (nats)"};
    int rows[2] = {table_eval_row(&t, 1, 1), table_eval_row(&t, 2, 1)};
    const char *labels[2] = {"Q-exit, Stage I gate", "Q-exit, Stage II gate"};
    double qx[2][N_Q], qy[2][N_Q];   // each curve its own points (the static depths use xs, ys)
    for (int g = 0; g < 2; g++) {
        if (rows[g] < 0) continue;
        double *x = qx[g], *y = qy[g];
        for (int i = 0; i < N_Q; i++) {
            char cq[32], cd[32];
            snprintf(cq, sizeof cq, "qce_%g", Q_GRID[i]);
            snprintf(cd, sizeof cd, "qdepth_%g", Q_GRID[i]);
            x[i] = t.values[(size_t)rows[g] * t.n_cols + table_col(&t, cd)];
            y[i] = t.values[(size_t)rows[g] * t.n_cols + table_col(&t, cq)];
        }
        plot_add(&p, labels[g], x, y, N_Q, g == 0 && rows[1] >= 0, 1);
    }
    int ref = rows[1] >= 0 ? rows[1] : rows[0];
    if (ref >= 0) {
        table_row_by_step(&t, ref, "ce", T, xs, ys);
        plot_add(&p, "static depth 1..T", xs, ys, T, 1, 1);
    }
    snprintf(path, sizeof path, "%s/qexit_tradeoff.svg", dir);
    err |= plot_write_svg(&p, path);

    free(xs); free(ys);
    table_free(&t);
    return err ? -1 : 0;
}

// ----------------------------------------------------------------------------
// state dump: one forward/backward on the next training batch (the first unless --resume), for
// checking another implementation
//
// Layout (little-endian), header 128 bytes:
//   0 char[8] "OURODUMP" | 8 uint32 version (1) | 12 uint32 header_bytes (128) | 16 Config (40 bytes)
//   56 int32 B | 60 int32 S | 64 int32 stage | 68 float32 beta | 72 float32 k | 76 float32 gamma
//   80 uint64 n_params | 88 float64 loss | 96 zeros to 128
// then: int32 inputs[B*S], int32 targets[B*S], float32 ce[T][B*S], float32 z[T][B*S] (gate logits),
//       float32 p[T][B*S], float32 params[n_params], float32 grads[n_params]
// (params and grads in the order of ouro.c section 2; no head when tied).

typedef struct {
    char magic[8];
    uint32_t version, header_bytes;
    Config config;
    int32_t B, S, stage;
    float beta, k, gamma;
    uint64_t n_params;
    double loss;
    uint8_t reserved[32];
} DumpHeader;
_Static_assert(sizeof(DumpHeader) == 128, "dump header must be 128 bytes");

void write_reals_as_float(AtomicFile *af, const real *x, size_t n) {
    float chunk[1024];
    for (size_t done = 0; done < n; done += 1024) {
        size_t k = n - done < 1024 ? n - done : 1024;
        for (size_t i = 0; i < k; i++) chunk[i] = (float)x[done + i];
        atomic_write(af, chunk, k * sizeof(float));
    }
}

int dump_state(Trainer *tr, const char *path) {
    Ouro *m = &tr->model;
    int B = tr->opt.B, S = tr->opt.S, N = B * S, T = m->cfg.T;
    OuroMode mode = tr->opt.stage == 2 ? OURO_STAGE2 : OURO_STAGE1;
    Rng saved = tr->rng;
    next_batch(tr);
    tr->rng = saved;  // the dump does not move the data position
    tr->batches_drawn--;
    ouro_zero_grad(m);
    if (ouro_forward(m, tr->inputs, tr->targets, B, S, T, mode) || ouro_backward(m)) return -1;
    DumpHeader h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, "OURODUMP", 8);
    h.version = 1;
    h.header_bytes = sizeof h;
    h.config = m->cfg;
    h.B = B; h.S = S; h.stage = tr->opt.stage;
    h.beta = m->obj.beta; h.k = m->obj.k; h.gamma = m->obj.gamma;
    h.n_params = m->n_params;
    h.loss = mode == OURO_STAGE2 ? m->metrics.loss_stage2 : m->metrics.loss_stage1;
    AtomicFile af;
    if (atomic_open(&af, path)) return -1;
    atomic_write(&af, &h, sizeof h);
    int32_t *ids = xmalloc(N * sizeof(int32_t));
    for (int i = 0; i < N; i++) ids[i] = tr->inputs[i];
    atomic_write(&af, ids, N * sizeof(int32_t));
    for (int i = 0; i < N; i++) ids[i] = tr->targets[i];
    atomic_write(&af, ids, N * sizeof(int32_t));
    free(ids);
    write_reals_as_float(&af, m->acts->ce, (size_t)T * N);
    write_reals_as_float(&af, m->acts->z, (size_t)T * N);
    write_reals_as_float(&af, m->acts->p, (size_t)T * N);
    write_reals_as_float(&af, m->params_memory, m->n_params);
    write_reals_as_float(&af, m->grads_memory, m->n_params);
    return atomic_commit(&af);
}

// ----------------------------------------------------------------------------
// setup

double lr_at(const TrainOptions *o, int step) {
    if (step < o->warmup) return o->lr * (step + 1) / o->warmup;
    double progress = o->steps > o->warmup ? (double)(step - o->warmup) / (o->steps - o->warmup) : 1;
    double floor = o->lr * o->min_lr_frac;
    return floor + (o->lr - floor) * 0.5 * (1 + cos(M_PI * fmin(progress, 1.0)));
}

void trainer_free(Trainer *tr) {
    ouro_free(&tr->model);
    tokenizer_free(&tr->tok);
    free(tr->train_tokens); free(tr->val_tokens);
    free(tr->inputs); free(tr->targets); free(tr->losses);
    memset(tr, 0, sizeof *tr);
}

// Loads the tokenizer, the shards and the model (fresh, resumed, or the Stage II start).
// Returns 0 or -1 with ouro_error set; nothing is written.
int trainer_setup(Trainer *tr, const TrainOptions *o) {
    memset(tr, 0, sizeof *tr);
    tr->opt = *o;
    if (o->stage != 1 && o->stage != 2) return fail("--stage", "must be 1 or 2");
    if (o->stage == 2 && !o->init_path && !o->resume)
        return fail("--stage 2", "needs --init CKPT (a Stage I checkpoint) or --resume");
    if (!o->resume && !o->overwrite && !o->dump_path && file_exists(o->ckpt_path))  // a dump writes none
        return fail(o->ckpt_path, "exists: pass --resume to continue it, --overwrite to replace it, or another --ckpt");
    if (o->init_path && strcmp(o->init_path, o->ckpt_path) == 0)
        return fail("--ckpt", "must differ from --init (the Stage I checkpoint is never overwritten)");
    if (tokenizer_load(&tr->tok, o->tokenizer_path)) return -1;

    Ouro *m = &tr->model;
    uint64_t rng_state = 0, data_pos = 0;
    if (o->resume) {
        if (ouro_load_checkpoint(m, o->ckpt_path, &rng_state, &data_pos)) return -1;
        if (rng_state == 0)  // xorshift stays at 0 once there, so no run ever saves it
            return fail(o->ckpt_path, "corrupt: its data-sampling RNG state is 0");
        if (m->step > (uint64_t)o->steps)
            return fail(o->ckpt_path, "is at step %llu, past --steps %d", (unsigned long long)m->step, o->steps);
    } else if (o->stage == 2) {
        if (ouro_load_checkpoint(m, o->init_path, NULL, NULL)) return -1;
        memset(m->adam_m, 0, m->n_params * sizeof(real));  // a fresh optimizer for the gate
        memset(m->adam_v, 0, m->n_params * sizeof(real));
        m->step = 0;
    } else {
        Config c = o->model;
        c.V = tr->tok.vocab_size;
        if (c.max_seq_len == 0) c.max_seq_len = o->S;
        if (config_validate(&c, "model flags")) return -1;
        if (ouro_init(m, &c, o->seed)) return -1;
    }
    if (m->cfg.V != tr->tok.vocab_size)
        return fail(o->tokenizer_path, "has %d tokens, the model's vocabulary is %d", tr->tok.vocab_size, m->cfg.V);
    const char *model_file = o->resume ? o->ckpt_path : o->stage == 2 ? o->init_path : "the new model";
    if (o->S > m->cfg.max_seq_len)
        return fail("-S", "%d is longer than the max_seq_len %d of %s", o->S, m->cfg.max_seq_len, model_file);
    m->obj = (Objective){.beta = (float)o->beta, .k = (float)o->k, .gamma = (float)o->gamma};

    if (load_shard(o->train_path, &tr->tok, o->S, &tr->train_tokens, &tr->n_train)) return -1;
    if (load_shard(o->val_path, &tr->tok, o->S, &tr->val_tokens, &tr->n_val)) return -1;

    rng_seed(&tr->rng, o->seed ^ 0x5EEDDA7Aull);
    if (o->resume) { tr->rng.state = rng_state; tr->batches_drawn = data_pos; }
    tr->inputs = xmalloc((size_t)o->B * o->S * sizeof(int));
    tr->targets = xmalloc((size_t)o->B * o->S * sizeof(int));
    tr->losses = xcalloc((size_t)o->steps + 1, sizeof(double));
    return 0;
}

int save_checkpoint(Trainer *tr) {
    return ouro_save_checkpoint(&tr->model, tr->opt.ckpt_path, tr->rng.state, tr->batches_drawn);
}

void format_duration(char *buf, size_t n, double seconds) {
    int s = (int)(seconds + 0.5);
    if (s >= 3600) snprintf(buf, n, "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60);
    else snprintf(buf, n, "%d:%02d", s / 60, s % 60);
}

// ----------------------------------------------------------------------------
// the training loop

// Runs from the model's current step to --stop-at (when set) or opt.steps. Returns 0, or -1 with
// ouro_error set (bad input, a failed checkpoint write, a non-finite loss or gradient: the last
// checkpoint written stays as it was).
int trainer_run(Trainer *tr) {
    const TrainOptions *o = &tr->opt;
    Ouro *m = &tr->model;
    int T = m->cfg.T, B = o->B, S = o->S;
    OuroMode mode = o->stage == 2 ? OURO_STAGE2 : OURO_STAGE1;
    // A new run starts the log afresh; --resume and Stage II (--init) append to it, so that one log
    // holds both stages and the figures can draw them together.
    FILE *log = log_open(tr, !o->resume && !o->init_path);
    int first = (int)m->step, end = o->stop_at > 0 && o->stop_at < o->steps ? o->stop_at : o->steps;
    double t0 = now_seconds(), t_last = t0;
    int steps_since_print = 0;

    for (int step = first; step <= end; step++) {
        int last = step == end;
        if (o->eval_every > 0 && (step % o->eval_every == 0 || last)) {
            EvalResult r;
            evaluate(tr, &r);
            if (!tr->have_first_eval) { tr->first_eval = r; tr->first_eval_step = step; tr->have_first_eval = 1; }
            if (!o->quiet) print_eval(tr, &r, step);
            // Every checkpoint is written at a step that was evaluated if it needed to be (the
            // last step of a run always is), so a resumed run's first evaluation is already in
            // the log: printed again, not logged twice.
            if (!(o->resume && step == first)) log_eval(log, tr, &r, step, lr_at(o, step));
        }
        if (step > first && (last || (o->ckpt_every > 0 && step % o->ckpt_every == 0))) {
            if (save_checkpoint(tr)) { if (log) fclose(log); return -1; }
            if (!o->quiet) printf("checkpoint %s (step %d)\n", o->ckpt_path, step);
        }
        if (last) break;

        double lr = lr_at(o, step);
        next_batch(tr);
        ouro_zero_grad(m);
        if (ouro_forward(m, tr->inputs, tr->targets, B, S, T, mode)) { if (log) fclose(log); return -1; }
        double loss = mode == OURO_STAGE2 ? m->metrics.loss_stage2 : m->metrics.loss_stage1;
        if (!isfinite(loss)) {
            const char *bad = first_nonfinite_tensor(m, m->params_memory);
            if (log) fclose(log);
            return fail("training", "loss is %g at step %d (first non-finite parameter tensor: %s); the last "
                        "checkpoint is kept", loss, step + 1, bad ? bad : "none, the forward pass overflowed");
        }
        if (ouro_backward(m)) { if (log) fclose(log); return -1; }
        double grad_norm = ouro_clip_grad(m, o->clip);
        if (!isfinite(grad_norm)) {
            const char *bad = first_nonfinite_tensor(m, m->grads_memory);
            if (log) fclose(log);
            return fail("training", "gradient norm is %g at step %d (first non-finite gradient: %s); the last "
                        "checkpoint is kept", grad_norm, step + 1, bad ? bad : "?");
        }
        ouro_adamw(m, lr, o->weight_decay);
        tr->losses[step] = loss;
        steps_since_print++;

        if ((step + 1) % o->log_every == 0 || step + 1 == o->steps) {
            double now = now_seconds(), tok_per_s = steps_since_print * (double)B * S / (now - t_last);
            log_train(log, tr, step + 1, lr, grad_norm, tok_per_s);
            if (!o->quiet) {
                char elapsed[32], left[32];
                format_duration(elapsed, sizeof elapsed, now - t0);
                format_duration(left, sizeof left, (now - t0) / (step + 1 - first) * (end - step - 1));
                printf("step %5d/%d | loss %.4f | CE", step + 1, o->steps, loss);
                for (int t = 0; t < T; t++) printf(" %.3f", m->metrics.ce[t]);
                printf(" | p");
                for (int t = 0; t < T; t++) printf(" %.2f", m->metrics.p[t]);
                printf(" | H %.2f | lr %.2e | |g| %.2f | %.0f tok/s | %s, %s left\n", m->metrics.entropy, lr,
                       grad_norm, tok_per_s, elapsed, left);
                fflush(stdout);
            }
            t_last = now;
            steps_since_print = 0;
        }
    }
    if (log) fclose(log);
    return 0;
}

// Stage II summary: how the Q-exit trade-off moved from the Stage I gate to the trained one.
// before: the first evaluation of this process, at step first_step: the Stage I gate when Stage II
// started from --init, a partly trained gate when it resumed.
void print_stage2_comparison(const EvalResult *before, int first_step, const EvalResult *after) {
    if (first_step == 0) printf("Q-exit trade-off, Stage I gate -> Stage II gate (validation):\n");
    else printf("Q-exit trade-off, the gate at step %d (this run's first evaluation) -> now (validation):\n", first_step);
    printf("     q   depth before  CE before   depth after  CE after\n");
    for (int i = 0; i < N_Q; i++)
        printf("  %4.2f   %8.2f    %8.4f    %8.2f    %8.4f\n", Q_GRID[i], before->q_depth[i], before->q_ce[i],
               after->q_depth[i], after->q_ce[i]);
}

// Writes the export with the tokenizer file embedded. The file is read again here, so it is
// checked again too, and must hold the very merges the run was trained with (it may have been
// replaced during a long run): a model exported with another tokenizer would decode to nonsense.
int export_model(Trainer *tr, const char *path) {
    const char *tok_path = tr->opt.tokenizer_path;
    char *tok_file = NULL;
    size_t tok_bytes = 0;
    if (read_file(tok_path, (size_t)1 << 20, &tok_file, &tok_bytes)) return -1;
    Tokenizer now;
    if (tokenizer_load_memory(&now, tok_file, tok_bytes, tok_path)) { free(tok_file); return -1; }
    int same = now.n_merges == tr->tok.n_merges &&
               memcmp(now.merges, tr->tok.merges, 2 * (size_t)now.n_merges * sizeof *now.merges) == 0;
    tokenizer_free(&now);
    int r = same ? ouro_export(&tr->model, path, tok_file, tok_bytes)
                 : fail(tok_path, "changed since training started: the export would carry another tokenizer");
    free(tok_file);
    return r;
}

// ----------------------------------------------------------------------------
// command line

void usage(void) {
    TrainOptions d = options_default();
    printf("usage: ./train [options]\n\n"
           "Trains a LoopLM (Stage I: LM + exit gate; Stage II: the gate alone) on token shards made by ./prepare.\n\n"
           "data\n"
           "  --train FILE        training shard                        (%s)\n"
           "  --val FILE          validation shard                      (%s)\n"
           "  --tokenizer FILE    tokenizer that made both; gives V     (%s)\n"
           "model (a new run; a resumed or Stage II run takes the shape from its checkpoint)\n"
           "  -d N                width                                 (%d)\n"
           "  -H N                attention heads                       (%d)\n"
           "  -F N                SwiGLU hidden width                   (%d)\n"
           "  -L N                layers in the shared stack            (%d)\n"
           "  -T N                recurrent steps (loops)               (%d)\n"
           "  --max-seq-len N     longest sequence the model accepts    (S)\n"
           "  --tied 0|1          tie the LM head to the embedding      (%d)\n"
           "  --rope-theta X      RoPE base                             (%g)\n"
           "batch and optimisation\n"
           "  -B N                sequences per batch                   (%d)\n"
           "  -S N                tokens per sequence                   (%d)\n"
           "  --steps N           optimizer steps in total              (%d)\n"
           "  --lr X              peak learning rate                    (%g)\n"
           "  --warmup N          linear warmup steps                   (%d)\n"
           "  --min-lr-frac X     cosine decay floor, fraction of --lr  (%g)\n"
           "  --weight-decay X    AdamW decay (matrices only)           (%g)\n"
           "  --clip X            gradient norm clipping, 0 = off       (%g)\n"
           "objective\n"
           "  --stage 1|2         1: LM + gate, 2: gate only            (%d)\n"
           "  --beta X            Stage I entropy bonus                 (%g)\n"
           "  --init FILE         Stage II: the Stage I checkpoint to start from\n"
           "  --k X, --gamma X    Stage II target sharpness, threshold  (%g, %g)\n"
           "evaluation, logs, files\n"
           "  --eval-every N      evaluate every N steps, 0 = never     (%d)\n"
           "  --eval-batches N    fixed validation batches per eval     (%d)\n"
           "  --log-every N       progress line every N steps           (%d)\n"
           "  --ckpt FILE         checkpoint path                       (%s)\n"
           "  --ckpt-every N      checkpoint every N steps (and at end) (%d)\n"
           "  --resume            continue from --ckpt\n"
           "  --stop-at N         end this invocation at step N with a checkpoint (--resume goes on)\n"
           "  --overwrite         replace an existing --ckpt in a new run\n"
           "  --export FILE       at the end, write the model for ./run (tokenizer embedded)\n"
           "  --log FILE          write every progress line and evaluation to a CSV file\n"
           "                      (a new Stage I run starts it afresh; --resume and --init append)\n"
           "  --plot DIR          at the end, draw SVG figures from --log into DIR\n"
           "  --dump-state FILE   one forward/backward on the next batch (the first unless --resume),\n"
           "                      written for cross-checking, then exit\n"
           "  --seed N            initialisation and batch sampling     (%llu)\n"
           "  --threads N         OpenMP threads, 0 = all cores         (%d)\n"
           "  --quiet             no progress output\n\n"
           "examples\n"
           "  ./train -T 4 --steps 2000 --log out/log.csv --plot out/plots --export out/model.bin\n"
           "  ./train -T 4 --steps 2000 --log out/log.csv --plot out/plots --export out/model.bin --resume\n"
           "                                             # the same run, after an interruption\n"
           "  ./train --stage 2 --init out/ckpt.bin --ckpt out/ckpt2.bin --steps 300 --lr 1e-3\n",
           d.train_path, d.val_path, d.tokenizer_path, d.model.d, d.model.H, d.model.F, d.model.L, d.model.T,
           d.model.tied, d.model.rope_theta, d.B, d.S, d.steps, d.lr, d.warmup, d.min_lr_frac, d.weight_decay,
           d.clip, d.stage, d.beta, d.k, d.gamma, d.eval_every, d.eval_batches, d.log_every, d.ckpt_path,
           d.ckpt_every, (unsigned long long)d.seed, d.threads);
}

// The most tokens one batch may hold: B x S indexes the activations as an int, and at ~90 KB of
// activations per token this is already far beyond any machine's memory.
#define MAX_BATCH_TOKENS (1 << 24)

// Parses argv into o. Returns 0, 1 for --help, or -1 with ouro_error naming the flag.
int parse_args(int argc, char **argv, TrainOptions *o) {
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) return 1;
        if (!strcmp(f, "--resume")) { o->resume = 1; continue; }
        if (!strcmp(f, "--overwrite")) { o->overwrite = 1; continue; }
        if (!strcmp(f, "--quiet")) { o->quiet = 1; continue; }
        if (i + 1 >= argc) return fail(f, "unknown flag, or it needs a value");
        const char *v = argv[++i];
        if (!*v) return fail(f, "empty value");  // an empty path would mean "/loss.svg" or ".tmp"
        double x = 0;
        long n = 0;
        int r = 0;
        if (!strcmp(f, "--train")) o->train_path = v;
        else if (!strcmp(f, "--val")) o->val_path = v;
        else if (!strcmp(f, "--tokenizer")) o->tokenizer_path = v;
        else if (!strcmp(f, "-d")) r = parse_int(f, v, 2, 1 << 16, &o->model.d);
        else if (!strcmp(f, "-H")) r = parse_int(f, v, 1, 1 << 12, &o->model.H);
        else if (!strcmp(f, "-F")) r = parse_int(f, v, 1, 1 << 18, &o->model.F);
        else if (!strcmp(f, "-L")) r = parse_int(f, v, 1, 1 << 10, &o->model.L);
        else if (!strcmp(f, "-T")) r = parse_int(f, v, 1, OURO_MAX_T, &o->model.T);
        else if (!strcmp(f, "--max-seq-len")) r = parse_int(f, v, 1, 1 << 20, &o->model.max_seq_len);
        else if (!strcmp(f, "--tied")) r = parse_int(f, v, 0, 1, &o->model.tied);
        else if (!strcmp(f, "--rope-theta")) { r = parse_double(f, v, 2, 1e12, &x); o->model.rope_theta = (float)x; }
        else if (!strcmp(f, "-B")) r = parse_int(f, v, 1, 1 << 16, &o->B);
        else if (!strcmp(f, "-S")) r = parse_int(f, v, 1, 1 << 20, &o->S);
        else if (!strcmp(f, "--steps")) r = parse_int(f, v, 0, 1 << 30, &o->steps);
        else if (!strcmp(f, "--lr")) r = parse_double(f, v, 0, 10, &o->lr);
        else if (!strcmp(f, "--warmup")) r = parse_int(f, v, 0, 1 << 30, &o->warmup);
        else if (!strcmp(f, "--min-lr-frac")) r = parse_double(f, v, 0, 1, &o->min_lr_frac);
        else if (!strcmp(f, "--weight-decay")) r = parse_double(f, v, 0, 10, &o->weight_decay);
        else if (!strcmp(f, "--clip")) r = parse_double(f, v, 0, 1e6, &o->clip);
        else if (!strcmp(f, "--stage")) r = parse_int(f, v, 1, 2, &o->stage);
        else if (!strcmp(f, "--beta")) r = parse_double(f, v, 0, 10, &o->beta);
        else if (!strcmp(f, "--k")) r = parse_double(f, v, 0, 1e4, &o->k);
        else if (!strcmp(f, "--gamma")) r = parse_double(f, v, -10, 10, &o->gamma);
        else if (!strcmp(f, "--init")) o->init_path = v;
        else if (!strcmp(f, "--eval-every")) r = parse_int(f, v, 0, 1 << 30, &o->eval_every);
        else if (!strcmp(f, "--eval-batches")) r = parse_int(f, v, 1, 1 << 20, &o->eval_batches);
        else if (!strcmp(f, "--log-every")) r = parse_int(f, v, 1, 1 << 30, &o->log_every);
        else if (!strcmp(f, "--ckpt")) o->ckpt_path = v;
        else if (!strcmp(f, "--ckpt-every")) r = parse_int(f, v, 0, 1 << 30, &o->ckpt_every);
        else if (!strcmp(f, "--stop-at")) r = parse_int(f, v, 0, 1 << 30, &o->stop_at);
        else if (!strcmp(f, "--export")) o->export_path = v;
        else if (!strcmp(f, "--log")) o->log_path = v;
        else if (!strcmp(f, "--plot")) o->plot_dir = v;
        else if (!strcmp(f, "--dump-state")) o->dump_path = v;
        else if (!strcmp(f, "--seed")) { r = parse_long(f, v, 0, LONG_MAX, &n); o->seed = (uint64_t)n; }
        else if (!strcmp(f, "--threads")) r = parse_int(f, v, 0, 1024, &o->threads);
        else return fail(f, "unknown flag");
        if (r) return -1;
    }
    if ((long long)o->B * o->S > MAX_BATCH_TOKENS)
        return fail("-B", "B x S = %lld tokens per batch; at most %d", (long long)o->B * o->S, MAX_BATCH_TOKENS);
    if (o->init_path && o->stage != 2) return fail("--init", "starts Stage II: it needs --stage 2");
    if (o->plot_dir && !o->log_path) return fail("--plot", "needs --log (the figures are drawn from the log)");
    if (o->warmup > o->steps) o->warmup = o->steps;
    return 0;
}

#ifndef TESTING
int main(int argc, char **argv) {
    TrainOptions o = options_default();
    int r = parse_args(argc, argv, &o);
    if (r == 1) { usage(); return 0; }
    if (r) die("%s\n(run ./train --help for every flag)", ouro_error);
#ifdef _OPENMP
    if (o.threads > 0) omp_set_num_threads(o.threads);
#endif
    if (o.plot_dir && o.steps == 0 && !o.resume && !o.init_path && !o.dump_path && !o.export_path) {
        // nothing to train, load or write: only redraw the figures of an existing log (--plot needs --log)
        if (write_plots(o.log_path, o.plot_dir)) die("%s", ouro_error);
        return 0;
    }
    Trainer tr;
    if (trainer_setup(&tr, &o)) die("%s", ouro_error);
    const Config *c = &tr.model.cfg;
    if (o.dump_path) {
        if (dump_state(&tr, o.dump_path)) die("%s", ouro_error);
        printf("wrote %s (loss %.6f)\n", o.dump_path, o.stage == 2 ? tr.model.metrics.loss_stage2 : tr.model.metrics.loss_stage1);
        trainer_free(&tr);
        return 0;
    }
    if (!o.quiet) {
        printf("model: V=%d d=%d H=%d F=%d L=%d T=%d max_seq_len=%d %s | %.2fM parameters | %.1f KB activations/token\n",
               c->V, c->d, c->H, c->F, c->L, c->T, c->max_seq_len, c->tied ? "tied" : "untied", tr.model.n_params / 1e6,
               acts_bytes_per_token(c, o.B, o.S) / 1024);
        printf("data: %zu train tokens, %zu val tokens | batch %d x %d | stage %d | %d threads | from step %llu\n",
               tr.n_train, tr.n_val, o.B, o.S, o.stage, max_threads(), (unsigned long long)tr.model.step);
    }
    if (trainer_run(&tr)) die("%s", ouro_error);
    if (o.stage == 2 && tr.have_first_eval && !o.quiet) {
        EvalResult after;
        evaluate(&tr, &after);
        print_stage2_comparison(&tr.first_eval, tr.first_eval_step, &after);
    }
    if (o.export_path) {
        if (export_model(&tr, o.export_path)) die("%s", ouro_error);
        if (!o.quiet) printf("exported %s\n", o.export_path);
    }
    if (o.plot_dir) {
        if (write_plots(o.log_path, o.plot_dir)) die("%s", ouro_error);
        if (!o.quiet) printf("figures in %s/\n", o.plot_dir);
    }
    trainer_free(&tr);
    return 0;
}
#endif
