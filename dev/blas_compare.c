// dev/blas_compare.c: ouro.c's matmul against a BLAS's sgemm, on the shapes of `make bench`.
//
// The speed goal of ouro.c's matmul was set against "an optimised BLAS". This program measures
// one on your machine, on the same shapes, in the same minutes, and checks that both compute the
// same product. It is not part of ouro.c (which depends on libc, libm and OpenMP only); build it
// against any CBLAS:
//     make blas-compare CBLAS="-lopenblas"     (Debian/Ubuntu: libopenblas-dev)
//     make blas-compare CBLAS="-lblis"         (libblis-dev)
// (elsewhere add -I and -L for the library's cblas.h and .so), and run it once per thread count,
// telling the BLAS the same count as OpenMP:
//     for t in 1 2; do OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t BLIS_NUM_THREADS=$t ./blas_compare; done
//
// Each shape's operands are allocated as `make bench` allocates them (where the model keeps them),
// C is overwritten, and the two take ROUNDS turns: ours, then the BLAS, each a run of calls of at
// least 1 GFLOP in all (after one untimed call). Before each run the program sleeps 0.2 s:
// OpenMP's threads and a BLAS's own (OpenBLAS's pthreads) spin for a while after a call, and a
// pool still spinning would slow the other one down. Medians.
#ifdef OURO_DOUBLE
#error "blas_compare compares float products (sgemm): build it without OURO_DOUBLE"
#endif
#define BENCH_LIBRARY    // bench.c without its main()
#pragma GCC diagnostic ignored "-Wunused-function"   // bench.c's other timers are not used here
#include "../bench.c"
#include <cblas.h>

#define ROUNDS 7

typedef enum { OURS, BLAS } Implementation;

// C (M,N) = op(A) op(B), as ouro.c's matmul or as the BLAS's sgemm (row-major, C overwritten).
static void product(Implementation impl, const Shape *sh, real *C, const real *A, const real *B) {
    int lda = shape_lda(sh), ldb = shape_ldb(sh);
    if (impl == OURS)
        matmul(C, sh->N, A, lda, sh->transA, B, ldb, sh->transB, sh->M, sh->N, sh->K, 0);
    else
        cblas_sgemm(CblasRowMajor, sh->transA ? CblasTrans : CblasNoTrans, sh->transB ? CblasTrans : CblasNoTrans,
                    sh->M, sh->N, sh->K, 1.0f, A, lda, B, ldb, 0.0f, C, sh->N);
}

// Median GFLOP/s of both implementations on one shape, and the largest difference between their
// results relative to the largest element of C.
static void compare_shape(const Shape *sh, double gflops[2], double *difference) {
    real *A, *B, *C[2];
    shape_operands(sh, &A, &B, &C[OURS]);   // as `make bench` times the shape (bench.c)
    C[BLAS] = shape_output(sh);
    size_t nc = (size_t)sh->M * sh->N;
    double flops = 2.0 * sh->M * sh->N * sh->K, rates[2][ROUNDS];
    int calls = (int)(1e9 / flops) + 1;
    for (int round = 0; round < ROUNDS; round++)
        for (int impl = 0; impl < 2; impl++) {
            struct timespec pause = {0, 200000000};
            nanosleep(&pause, NULL);
            product(impl, sh, C[impl], A, B);   // wakes the threads; not timed
            double t0 = now();
            for (int i = 0; i < calls; i++) product(impl, sh, C[impl], A, B);
            rates[impl][round] = flops * calls / (now() - t0) * 1e-9;
        }
    for (int impl = 0; impl < 2; impl++) gflops[impl] = median(rates[impl], ROUNDS);
    double largest = 0, diff = 0;
    for (size_t i = 0; i < nc; i++) {
        largest = fmax(largest, fabs(C[BLAS][i]));
        diff = fmax(diff, fabs(C[OURS][i] - C[BLAS][i]));
    }
    *difference = largest > 0 ? diff / largest : diff;
    free(A); free(B); free(C[0]); free(C[1]);
}

int main(void) {
    int threads = max_threads();
    printf("ouro.c's matmul against the BLAS's cblas_sgemm, %d thread%s (OpenMP; give the BLAS the same\n"
           "count: OPENBLAS_NUM_THREADS, BLIS_NUM_THREADS), FMA peak %.1f GFLOP/s per core\n",
           threads, threads > 1 ? "s" : "", fma_peak(1));
    printf("%-7s %-24s %5s %5s %5s | %7s %7s %6s | %s\n", "config", "product", "M", "N", "K", "ours", "BLAS",
           "ratio", "max |difference| / max |C|");
    BenchConfig configs[2] = {bench_config("tiny", 128, 4, 344, 512), bench_config("medium", 256, 8, 688, 4096)};
    for (int i = 0; i < 3; i++) {
        Shape shapes[32];
        int n = i < 2 ? model_shapes(&configs[i], shapes) : reference_shapes(shapes);
        for (int k = 0; k < n; k++) {
            double gflops[2], difference;
            compare_shape(&shapes[k], gflops, &difference);
            printf("%-7s %-24s %5d %5d %5d | %7.1f %7.1f %5.2fx | %.1e\n", i < 2 ? configs[i].name : "ref",
                   shapes[k].what, shapes[k].M, shapes[k].N, shapes[k].K, gflops[OURS], gflops[BLAS],
                   gflops[OURS] / gflops[BLAS], difference);
            fflush(stdout);
        }
    }
    printf("  GFLOP/s = 2MNK / time, median of %d rounds; ratio: ours / BLAS (above 1: ours is faster)\n", ROUNDS);
    return 0;
}
