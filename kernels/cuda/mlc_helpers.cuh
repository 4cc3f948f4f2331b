// mlc_helpers.cuh: the small hand-written device library that generated µGraph kernels call.
//
// Tiles live in shared memory as row-major fp32 arrays whose sizes are compile-time constants.
// Block-level helpers are called by every thread of a block and do not synchronize: the
// generated code places __syncthreads() between dependency levels. Row helpers give each warp
// one row at a time, so blockDim.x must be a multiple of 32. Global tensors are row-major;
// loads and stores convert through float, so an element type other than float (e.g. __half)
// works wherever static_cast<float> does. The header compiles under nvcc and NVRTC (CuPy).
#pragma once

namespace mlc {

// ---- scalar functions and reduction operators ---------------------------------------------

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// GELU, erf form: x * Phi(x).
__device__ __forceinline__ float gelu(float x) {
  return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
}

// GELU, tanh form: 0.5 x (1 + tanh(u)) written as x * sigmoid(2u), the same function without
// the cancellation of 1 + tanh(u) for negative x.
__device__ __forceinline__ float gelu_tanh(float x) {
  const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return x / (1.0f + expf(-2.0f * u));
}

struct SumOp {
  static __device__ __forceinline__ float init() { return 0.0f; }
  static __device__ __forceinline__ float apply(float a, float b) { return a + b; }
};

struct MaxOp {
  static __device__ __forceinline__ float init() { return neg_inf(); }
  static __device__ __forceinline__ float apply(float a, float b) { return fmaxf(a, b); }
};

struct Identity {
  static __device__ __forceinline__ float apply(float x) { return x; }
};

struct Square {
  static __device__ __forceinline__ float apply(float x) { return x * x; }
};

template <class Op>
__device__ __forceinline__ float warp_reduce(float value) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    value = Op::apply(value, __shfl_xor_sync(0xffffffffu, value, offset));
  }
  return value;
}

// ---- thread mapping ------------------------------------------------------------------------

// Block-stride loop: the threads of one block visit 0..N-1 between them.
template <int N, class Body>
__device__ __forceinline__ void for_each(Body body) {
  for (int i = threadIdx.x; i < N; i += blockDim.x) body(i);
}

// Grid-stride loop for library kernels: all threads of the grid visit 0..N-1 between them.
template <long long N, class Body>
__device__ __forceinline__ void grid_for_each(Body body) {
  const long long step = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < N;
       i += step) {
    body(i);
  }
}

// Warp-per-row loop: body(row, lane) runs on every lane of the warp that owns the row.
template <int ROWS, class Body>
__device__ __forceinline__ void for_each_row(Body body) {
  const int lane = threadIdx.x & 31;
  const int warps = blockDim.x >> 5;
  for (int row = threadIdx.x >> 5; row < ROWS; row += warps) body(row, lane);
}

template <int N>
__device__ __forceinline__ void fill(float* dst, float value) {
  for_each<N>([&](int i) { dst[i] = value; });
}

// ---- global <-> shared tile copies -----------------------------------------------------------

// Copy a (T0, T1, T2, T3) tile whose first element is src; S0..S2 are the tensor's strides of
// the first three (padded) dims, the last dim is contiguous. Consecutive threads read
// consecutive addresses of a tile row (coalesced).
template <int T0, int T1, int T2, int T3, long long S0, long long S1, long long S2, class T>
__device__ __forceinline__ void load_tile(float* dst, const T* src) {
  for_each<T0 * T1 * T2 * T3>([&](int i) {
    const int i3 = i % T3;
    int rest = i / T3;
    const int i2 = rest % T2;
    rest /= T2;
    const int i1 = rest % T1;
    const int i0 = rest / T1;
    dst[i] = static_cast<float>(src[i0 * S0 + i1 * S1 + i2 * S2 + i3]);
  });
}

template <int T0, int T1, int T2, int T3, long long S0, long long S1, long long S2, class T>
__device__ __forceinline__ void store_tile(T* dst, const float* src) {
  for_each<T0 * T1 * T2 * T3>([&](int i) {
    const int i3 = i % T3;
    int rest = i / T3;
    const int i2 = rest % T2;
    rest /= T2;
    const int i1 = rest % T1;
    const int i0 = rest / T1;
    dst[i0 * S0 + i1 * S1 + i2 * S2 + i3] = static_cast<T>(src[i]);
  });
}

// ---- tile ops --------------------------------------------------------------------------------

// c[b] = a[b] @ b[b] for BATCH (M, K) x (K, N) products; a batch stride of 0 broadcasts.
template <int BATCH, int M, int N, int K, int A_STRIDE, int B_STRIDE>
__device__ __forceinline__ void tile_matmul(const float* a, const float* b, float* c) {
  for_each<BATCH * M * N>([&](int i) {
    const int col = i % N;
    const int row = (i / N) % M;
    const int batch = i / (M * N);
    const float* a_row = a + batch * A_STRIDE + row * K;
    const float* b_col = b + batch * B_STRIDE + col;
    float sum = 0.0f;
#pragma unroll 8
    for (int k = 0; k < K; ++k) sum += a_row[k] * b_col[k * N];
    c[i] = sum;
  });
}

// dst[r] = Op-reduce of Pre(src[r, :]) for ROWS rows of COLS (one warp per row).
template <class Op, int ROWS, int COLS, class Pre = Identity>
__device__ __forceinline__ void row_reduce(const float* src, float* dst) {
  for_each_row<ROWS>([&](int row, int lane) {
    float value = Op::init();
    for (int col = lane; col < COLS; col += 32) {
      value = Op::apply(value, Pre::apply(src[row * COLS + col]));
    }
    value = warp_reduce<Op>(value);
    if (lane == 0) dst[row] = value;
  });
}

// Reduce the middle dim of an (OUTER, EXTENT, INNER) tile (one thread per output element).
template <class Op, int OUTER, int EXTENT, int INNER>
__device__ __forceinline__ void strided_reduce(const float* src, float* dst) {
  for_each<OUTER * INNER>([&](int i) {
    const float* base = src + (i / INNER) * EXTENT * INNER + i % INNER;
    float value = Op::init();
    for (int k = 0; k < EXTENT; ++k) value = Op::apply(value, base[k * INNER]);
    dst[i] = value;
  });
}

// dst = src / sqrt(mean(src^2 over each row) + eps).
template <int ROWS, int COLS>
__device__ __forceinline__ void rms_norm_rows(const float* src, float* dst, float eps) {
  for_each_row<ROWS>([&](int row, int lane) {
    float sum = 0.0f;
    for (int col = lane; col < COLS; col += 32) sum += Square::apply(src[row * COLS + col]);
    const float rms = sqrtf(warp_reduce<SumOp>(sum) / static_cast<float>(COLS) + eps);
    for (int col = lane; col < COLS; col += 32) dst[row * COLS + col] = src[row * COLS + col] / rms;
  });
}

// dst = exp(src - max) / sum(exp(src - max)) over each row (the safe softmax).
template <int ROWS, int COLS>
__device__ __forceinline__ void softmax_rows(const float* src, float* dst) {
  for_each_row<ROWS>([&](int row, int lane) {
    const float* x = src + row * COLS;
    float high = neg_inf();
    for (int col = lane; col < COLS; col += 32) high = fmaxf(high, x[col]);
    high = warp_reduce<MaxOp>(high);
    float sum = 0.0f;
    for (int col = lane; col < COLS; col += 32) sum += expf(x[col] - high);
    sum = warp_reduce<SumOp>(sum);
    for (int col = lane; col < COLS; col += 32) dst[row * COLS + col] = expf(x[col] - high) / sum;
  });
}

// dst = (src - mean) / sqrt(mean((src - mean)^2) + eps) over each row (LayerNorm, no affine).
template <int ROWS, int COLS>
__device__ __forceinline__ void layer_norm_rows(const float* src, float* dst, float eps) {
  for_each_row<ROWS>([&](int row, int lane) {
    const float* x = src + row * COLS;
    float sum = 0.0f;
    for (int col = lane; col < COLS; col += 32) sum += x[col];
    const float mean = warp_reduce<SumOp>(sum) / static_cast<float>(COLS);
    float squares = 0.0f;
    for (int col = lane; col < COLS; col += 32) squares += Square::apply(x[col] - mean);
    const float variance = warp_reduce<SumOp>(squares) / static_cast<float>(COLS);
    const float deviation = sqrtf(variance + eps);
    for (int col = lane; col < COLS; col += 32) {
      dst[row * COLS + col] = (x[col] - mean) / deviation;
    }
  });
}

// ---- for-loop accumulators -------------------------------------------------------------------

// acc[r] = acc[r] * scale(r) + sum(Pre(src[r, :])); scale(r) is 1 for a plain row sum and
// exp(m_old - m_new) for an online-softmax denominator.
template <int ROWS, int COLS, class Pre, class Scale>
__device__ __forceinline__ void row_accumulate(const float* src, float* acc, Scale scale) {
  for_each_row<ROWS>([&](int row, int lane) {
    float sum = 0.0f;
    for (int col = lane; col < COLS; col += 32) sum += Pre::apply(src[row * COLS + col]);
    sum = warp_reduce<SumOp>(sum);
    if (lane == 0) acc[row] = acc[row] * scale(row) + sum;
  });
}

struct NoScale {
  __device__ __forceinline__ float operator()(int) const { return 1.0f; }
};

// Running row max: m[r] = max(m[r], max(src[r, :])); scale[r] = exp(m_old - m_new), the factor
// that moves sums taken under the old max onto the new one (0 on the first iteration).
template <int ROWS, int COLS>
__device__ __forceinline__ void row_running_max(const float* src, float* m, float* scale) {
  for_each_row<ROWS>([&](int row, int lane) {
    float value = neg_inf();
    for (int col = lane; col < COLS; col += 32) value = fmaxf(value, src[row * COLS + col]);
    value = warp_reduce<MaxOp>(value);
    if (lane == 0) {
      const float old = m[row];
      const float now = fmaxf(old, value);
      scale[row] = old == neg_inf() ? 0.0f : expf(old - now);
      m[row] = now;
    }
  });
}

// acc[r, j] += sum_k src[r, k * WIDTH + j]: fold a row of COLS into WIDTH lanes.
template <int ROWS, int COLS, int WIDTH>
__device__ __forceinline__ void accumulate_todimx(const float* src, float* acc) {
  for_each<ROWS * WIDTH>([&](int i) {
    const float* base = src + (i / WIDTH) * COLS + i % WIDTH;
    float sum = 0.0f;
    for (int k = 0; k < COLS / WIDTH; ++k) sum += base[k * WIDTH];
    acc[i] += sum;
  });
}

// ---- library (kernel-level) ops: one generic kernel body each --------------------------------

template <int BATCH, int M, int N, int K, long long A_STRIDE, long long B_STRIDE>
__device__ __forceinline__ void grid_matmul(const float* a, const float* b, float* c) {
  grid_for_each<static_cast<long long>(BATCH) * M * N>([&](long long i) {
    const long long col = i % N;
    const long long row = (i / N) % M;
    const long long batch = i / (static_cast<long long>(M) * N);
    const float* a_row = a + batch * A_STRIDE + row * K;
    const float* b_col = b + batch * B_STRIDE + col;
    float sum = 0.0f;
    for (int k = 0; k < K; ++k) sum += a_row[k] * b_col[static_cast<long long>(k) * N];
    c[i] = sum;
  });
}

// Reduce the middle dim of an (OUTER, EXTENT, INNER) tensor, then divide by DIVISOR (a mean).
template <class Op, long long OUTER, int EXTENT, long long INNER, int DIVISOR>
__device__ __forceinline__ void grid_reduce(const float* src, float* dst) {
  grid_for_each<OUTER * INNER>([&](long long i) {
    const float* base = src + (i / INNER) * EXTENT * INNER + i % INNER;
    float value = Op::init();
    for (int k = 0; k < EXTENT; ++k) value = Op::apply(value, base[k * INNER]);
    dst[i] = DIVISOR == 1 ? value : value / static_cast<float>(DIVISOR);
  });
}

}  // namespace mlc
