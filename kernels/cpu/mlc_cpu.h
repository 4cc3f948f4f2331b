// mlc_cpu.h: the small hand-written library that generated CPU µGraph kernels call.
//
// Tiles are row-major fp32 arrays in a per-thread arena (cache-resident); their sizes are
// compile-time constants at every call site, so each helper is specialized and unrolled by the
// compiler. Matmuls go through one register-blocked micro-kernel written with GCC vector
// extensions: 16-float vectors become one AVX-512 register, two AVX2 or four SSE registers,
// so the same source compiles on any x86-64 (or other GCC / Clang target).
#pragma once

#include <math.h>
#include <stdlib.h>
#include <string.h>

namespace mlc {

// ---- scalar functions ------------------------------------------------------------------------

static inline float silu(float x) { return x / (1.0f + expf(-x)); }

static inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// GELU, erf form: x * Phi(x).
static inline float gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f)); }

// GELU, tanh form, written as the reference writes it: 0.5 x (1 + tanh(u)).
static inline float gelu_tanh(float x) {
  const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return 0.5f * x * (1.0f + tanhf(u));
}

// ---- tile movement ---------------------------------------------------------------------------

// Copy a (D0, D1, D2, D3) tile whose rows start at src + i0*S0 + i1*S1 + i2*S2 (contiguous
// along D3) into a dense tile; store_tile is the reverse.
// Rows of a strided tile each sit in another DRAM page, where the hardware prefetcher does
// not follow: prefetch PREFETCH_ROWS rows ahead so that the misses overlap.
constexpr int PREFETCH_ROWS = 8;

template <int D0, int D1, int D2, int D3, long long S0, long long S1, long long S2>
static inline void load_tile(float* __restrict dst, const float* __restrict src) {
  for (int i0 = 0; i0 < D0; ++i0)
    for (int i1 = 0; i1 < D1; ++i1)
      for (int i2 = 0; i2 < D2; ++i2) {
        const float* row = src + i0 * S0 + i1 * S1 + i2 * S2;
        if (S2 != D3 && i2 + PREFETCH_ROWS < D2) {
          for (int line = 0; line < D3; line += 16)
            __builtin_prefetch(row + PREFETCH_ROWS * S2 + line);
        }
        memcpy(dst + ((i0 * D1 + i1) * D2 + i2) * D3, row, sizeof(float) * D3);
      }
}

template <int D0, int D1, int D2, int D3, long long S0, long long S1, long long S2>
static inline void store_tile(float* __restrict dst, const float* __restrict src) {
  for (int i0 = 0; i0 < D0; ++i0)
    for (int i1 = 0; i1 < D1; ++i1)
      for (int i2 = 0; i2 < D2; ++i2)
        memcpy(dst + i0 * S0 + i1 * S1 + i2 * S2, src + ((i0 * D1 + i1) * D2 + i2) * D3,
               sizeof(float) * D3);
}

// ---- matmul micro-kernel ---------------------------------------------------------------------

typedef float v16 __attribute__((vector_size(64)));

static inline v16 load16(const float* p) {
  v16 v;
  memcpy(&v, p, sizeof v);  // an unaligned vector load
  return v;
}

static inline void store16(float* p, v16 v) { memcpy(p, &v, sizeof v); }

// C[MR x 16*NV] (+)= A[MR x K] @ B[K x 16*NV]: MR*NV accumulators stay in registers while
// B streams row by row and each A element is broadcast; `add` keeps C's previous value.
template <int MR, int NV>
static inline void micro(int k_size, const float* __restrict a, long long lda,
                         const float* __restrict b, long long ldb, float* __restrict c,
                         long long ldc, bool add) {
  v16 acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = add ? load16(c + i * ldc + 16 * j) : (v16){};
  for (int k = 0; k < k_size; ++k) {
    v16 row[NV];
    for (int j = 0; j < NV; ++j) {
      __builtin_prefetch(b + (k + PREFETCH_ROWS) * ldb + 16 * j);  // B rows are pages apart
      row[j] = load16(b + k * ldb + 16 * j);
    }
    for (int i = 0; i < MR; ++i) {
      const float scalar = a[i * lda + k];
      for (int j = 0; j < NV; ++j) acc[i][j] += scalar * row[j];
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) store16(c + i * ldc + 16 * j, acc[i][j]);
}

// Rows [0, m) of one 16*NV-column panel: 6-row blocks, then the remaining rows one size down.
template <int NV>
static inline void panel(int m, int k, const float* a, long long lda, const float* b,
                         long long ldb, float* c, long long ldc, bool add) {
  int i = 0;
  for (; i + 6 <= m; i += 6) micro<6, NV>(k, a + i * lda, lda, b, ldb, c + i * ldc, ldc, add);
  switch (m - i) {
    case 5: micro<5, NV>(k, a + i * lda, lda, b, ldb, c + i * ldc, ldc, add); break;
    case 4: micro<4, NV>(k, a + i * lda, lda, b, ldb, c + i * ldc, ldc, add); break;
    case 3: micro<3, NV>(k, a + i * lda, lda, b, ldb, c + i * ldc, ldc, add); break;
    case 2: micro<2, NV>(k, a + i * lda, lda, b, ldb, c + i * ldc, ldc, add); break;
    case 1: micro<1, NV>(k, a + i * lda, lda, b, ldb, c + i * ldc, ldc, add); break;
    default: break;
  }
}

typedef float v8 __attribute__((vector_size(32)));

// An 8-column panel (a half-vector tail): 4 rows of 8-wide accumulators at a time.
static inline void panel8(int m, int k_size, const float* __restrict a, long long lda,
                          const float* __restrict b, long long ldb, float* __restrict c,
                          long long ldc, bool add) {
  int i = 0;
  for (; i + 4 <= m; i += 4) {
    v8 acc[4] = {};
    if (add)
      for (int r = 0; r < 4; ++r) memcpy(&acc[r], c + (i + r) * ldc, sizeof acc[r]);
    for (int k = 0; k < k_size; ++k) {
      v8 row;
      memcpy(&row, b + k * ldb, sizeof row);
      for (int r = 0; r < 4; ++r) acc[r] += a[(i + r) * lda + k] * row;
    }
    for (int r = 0; r < 4; ++r) memcpy(c + (i + r) * ldc, &acc[r], sizeof acc[r]);
  }
  for (; i < m; ++i) {
    v8 acc = {};
    if (add) memcpy(&acc, c + i * ldc, sizeof acc);
    for (int k = 0; k < k_size; ++k) {
      v8 row;
      memcpy(&row, b + k * ldb, sizeof row);
      acc += a[i * lda + k] * row;
    }
    memcpy(c + i * ldc, &acc, sizeof acc);
  }
}

// Columns that do not fill an 8-wide vector: a plain loop the compiler may still vectorize.
static inline void tail_columns(int m, int n, int k_size, const float* __restrict a,
                                long long lda, const float* __restrict b, long long ldb,
                                float* __restrict c, long long ldc, bool add) {
  for (int i = 0; i < m; ++i) {
    float acc[16] = {};
    if (add)
      for (int j = 0; j < n; ++j) acc[j] = c[i * ldc + j];
    for (int k = 0; k < k_size; ++k) {
      const float scalar = a[i * lda + k];
      for (int j = 0; j < n; ++j) acc[j] += scalar * b[k * ldb + j];
    }
    for (int j = 0; j < n; ++j) c[i * ldc + j] = acc[j];
  }
}

// C = A @ B for row-major (m x k) A, (k x n) B, (m x n) C with leading dims lda, ldb, ldc.
// K goes in slices of KC so that a 32-column slice of B (32 KiB) stays in L1/L2 while every
// row block of A passes over it.
constexpr int KC = 256;

static inline void gemm(int m, int n, int k, const float* a, long long lda, const float* b,
                        long long ldb, float* c, long long ldc) {
  for (int k0 = 0; k0 < k; k0 += KC) {
    const int kc = k - k0 < KC ? k - k0 : KC;
    const bool add = k0 > 0;
    const float* ak = a + k0;
    const float* bk = b + k0 * ldb;
    int j = 0;
    for (; j + 32 <= n; j += 32) panel<2>(m, kc, ak, lda, bk + j, ldb, c + j, ldc, add);
    for (; j + 16 <= n; j += 16) panel<1>(m, kc, ak, lda, bk + j, ldb, c + j, ldc, add);
    for (; j + 8 <= n; j += 8) panel8(m, kc, ak, lda, bk + j, ldb, c + j, ldc, add);
    if (j < n) tail_columns(m, n - j, kc, ak, lda, bk + j, ldb, c + j, ldc, add);
  }
}

// A batch of tile matmuls (one thread): c[b] = a[b * A_STRIDE] @ b[b * B_STRIDE].
template <int BATCH, int M, int N, int K, long long A_STRIDE, long long B_STRIDE>
static inline void tile_matmul(const float* a, const float* b, float* c) {
  for (int batch = 0; batch < BATCH; ++batch)
    gemm(M, N, K, a + batch * A_STRIDE, K, b + batch * B_STRIDE, N, c + batch * M * N, N);
}

// A whole-tensor matmul over all threads: independent (batch, row block, column block) tasks.
template <int BATCH, int M, int N, int K, long long A_STRIDE, long long B_STRIDE>
static inline void parallel_matmul(const float* a, const float* b, float* c) {
  constexpr int ROWS = 48, COLS = 128;  // a task's C block; its B panel stays in L2
  constexpr int ROW_BLOCKS = (M + ROWS - 1) / ROWS, COL_BLOCKS = (N + COLS - 1) / COLS;
  constexpr long long FLOPS = 2LL * BATCH * M * N * K;
#pragma omp parallel for collapse(3) schedule(static) if (FLOPS > 200000)
  for (int batch = 0; batch < BATCH; ++batch)
    for (int rb = 0; rb < ROW_BLOCKS; ++rb)
      for (int cb = 0; cb < COL_BLOCKS; ++cb) {
        const int row = rb * ROWS, col = cb * COLS;
        const int rows = M - row < ROWS ? M - row : ROWS, cols = N - col < COLS ? N - col : COLS;
        gemm(rows, cols, K, a + batch * A_STRIDE + (long long)row * K, K,
             b + batch * B_STRIDE + col, N, c + (long long)batch * M * N + (long long)row * N + col,
             N);
      }
}

// ---- row-wise norms over the last dim (whole rows in the tile) --------------------------------

template <int ROWS, int COLS>
static inline void rms_norm_rows(const float* __restrict x, float* __restrict y, float eps) {
  for (int r = 0; r < ROWS; ++r) {
    const float* row = x + r * COLS;
    float sum = 0.0f;
    for (int c = 0; c < COLS; ++c) sum += row[c] * row[c];
    const float root = sqrtf(sum / (float)COLS + eps);
    for (int c = 0; c < COLS; ++c) y[r * COLS + c] = row[c] / root;
  }
}

template <int ROWS, int COLS>
static inline void softmax_rows(const float* __restrict x, float* __restrict y) {
  for (int r = 0; r < ROWS; ++r) {
    const float* row = x + r * COLS;
    float top = -INFINITY, sum = 0.0f;
    for (int c = 0; c < COLS; ++c) top = fmaxf(top, row[c]);
    for (int c = 0; c < COLS; ++c) {
      y[r * COLS + c] = expf(row[c] - top);
      sum += y[r * COLS + c];
    }
    for (int c = 0; c < COLS; ++c) y[r * COLS + c] /= sum;
  }
}

template <int ROWS, int COLS>
static inline void layer_norm_rows(const float* __restrict x, float* __restrict y, float eps) {
  for (int r = 0; r < ROWS; ++r) {
    const float* row = x + r * COLS;
    float sum = 0.0f, squares = 0.0f;
    for (int c = 0; c < COLS; ++c) sum += row[c];
    const float mean = sum / (float)COLS;
    for (int c = 0; c < COLS; ++c) squares += (row[c] - mean) * (row[c] - mean);
    const float root = sqrtf(squares / (float)COLS + eps);
    for (int c = 0; c < COLS; ++c) y[r * COLS + c] = (row[c] - mean) / root;
  }
}

// ---- reductions and accumulators -------------------------------------------------------------

// y[o, i] = reduce over e of x[o, e, i]; SUM picks add (true) or max (false).
template <bool SUM, long long OUTER, int EXTENT, long long INNER>
static inline void reduce(const float* __restrict x, float* __restrict y) {
  for (long long o = 0; o < OUTER; ++o) {
    float* out = y + o * INNER;
    const float* in = x + o * EXTENT * INNER;
    for (long long i = 0; i < INNER; ++i) out[i] = in[i];
    for (int e = 1; e < EXTENT; ++e)
      for (long long i = 0; i < INNER; ++i)
        out[i] = SUM ? out[i] + in[e * INNER + i] : fmaxf(out[i], in[e * INNER + i]);
  }
}

// acc[r] += sum over c of f(x[r, c]) with f the identity or the square.
template <int ROWS, int COLS, bool SQUARE>
static inline void row_accumulate(const float* __restrict x, float* __restrict acc) {
  for (int r = 0; r < ROWS; ++r) {
    float sum = 0.0f;
    for (int c = 0; c < COLS; ++c) sum += SQUARE ? x[r * COLS + c] * x[r * COLS + c]
                                                 : x[r * COLS + c];
    acc[r] += sum;
  }
}

// acc[r, w] += sum over k of x[r, k * WIDTH + w].
template <int ROWS, int COLS, int WIDTH>
static inline void accumulate_todimx(const float* __restrict x, float* __restrict acc) {
  for (int r = 0; r < ROWS; ++r)
    for (int k = 0; k < COLS / WIDTH; ++k)
      for (int w = 0; w < WIDTH; ++w) acc[r * WIDTH + w] += x[r * COLS + k * WIDTH + w];
}

// m[r] = max(m[r], max over c of x[r, c]): the running max of accum_max_ld.
template <int ROWS, int COLS>
static inline void row_running_max(const float* __restrict x, float* __restrict m) {
  for (int r = 0; r < ROWS; ++r) {
    float top = m[r];
    for (int c = 0; c < COLS; ++c) top = fmaxf(top, x[r * COLS + c]);
    m[r] = top;
  }
}

static inline void fill(float* x, long long n, float value) {
  for (long long i = 0; i < n; ++i) x[i] = value;
}

// A per-thread arena for a block's tiles, 64-byte aligned.
static inline float* arena(long long floats) {
  return (float*)aligned_alloc(64, (size_t)((floats * 4 + 63) / 64 * 64));
}

}  // namespace mlc
