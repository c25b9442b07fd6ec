// CPU kernels of both MRLA forms.
//
// MRLA-light's branch of a ResNet block, fused:  out = o + BN(dw3x3(o; K) + lambda * s)
//
// PyTorch runs this branch as ~10 separate passes over the feature map each way, and oneDNN's NCHW
// depthwise kernel (backward in particular) is slow on CPU. Here every (sample, channel) plane is
// processed once per pass while it sits in cache: the forward reads o and s once and writes y
// (with BatchNorm's per-plane sums); the backward reads g, y, o, s once and writes the gradients
// of o and s, the per-plane kernel gradient and lambda's partial sums. Per-channel BatchNorm
// constants are tiny and computed in Python (mrla_nas/layers/fused_light.py).
//
// K is one 3x3 kernel per (sample, channel): the depthwise weight already scaled by its head's gate.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <vector>
#include <cmath>
#include <cstring>
#include <algorithm>

namespace {

// A plane is processed as one flat run of H*W values (long vector loops even for 7x7 planes). It is
// first copied into a scratch buffer with a zero row above and below, so vertical neighbours need
// no test; horizontal neighbours that would wrap into the next row are masked by `left`/`right`
// (0 in the first/last column, 1 elsewhere).
struct PlaneGeometry {
  int64_t H, W, HW, pad;  // pad = W + 1: offset of element 0 in the padded buffer
  std::vector<float> left, right;
  PlaneGeometry(int64_t H_, int64_t W_) : H(H_), W(W_), HW(H_ * W_), pad(W_ + 1), left(HW), right(HW) {
    for (int64_t n = 0; n < HW; ++n) {
      left[n] = (n % W) != 0;
      right[n] = (n % W) != W - 1;
    }
  }
  int64_t padded_size() const { return HW + 2 * pad; }
};

template <typename T>
inline void load_padded(T* __restrict dst, const T* __restrict src, const PlaneGeometry& g) {
  std::fill(dst, dst + g.pad, T(0));
  std::copy(src, src + g.HW, dst + g.pad);
  std::fill(dst + g.pad + g.HW, dst + g.padded_size(), T(0));
}

// out[n] (=|+=) sum_{i,j} k[3i+j] * x[n + (i-1)W + (j-1)], x zero outside the plane.
template <typename T, bool Accumulate>
inline void conv_plane(T* __restrict out, const T* __restrict xp, const T* k, const PlaneGeometry& g) {
  const T* __restrict x = xp + g.pad;
  const float* __restrict L = g.left.data();
  const float* __restrict R = g.right.data();
  const int64_t W = g.W;
  const T k00 = k[0], k01 = k[1], k02 = k[2], k10 = k[3], k11 = k[4], k12 = k[5], k20 = k[6], k21 = k[7], k22 = k[8];
#pragma omp simd
  for (int64_t n = 0; n < g.HW; ++n) {
    const T l = k00 * x[n - W - 1] + k10 * x[n - 1] + k20 * x[n + W - 1];
    const T c = k01 * x[n - W] + k11 * x[n] + k21 * x[n + W];
    const T r = k02 * x[n - W + 1] + k12 * x[n + 1] + k22 * x[n + W + 1];
    const T v = c + T(L[n]) * l + T(R[n]) * r;
    if (Accumulate) out[n] += v; else out[n] = v;
  }
}

// dk[3i+j] = sum_n gy[n] * x[n + (i-1)W + (j-1)] (no wrap across rows); xp padded as by load_padded.
template <typename T>
inline void kernel_grad(const T* __restrict gy, const T* __restrict xp, const PlaneGeometry& g, T* dk) {
  const T* __restrict x = xp + g.pad;
  const float* __restrict L = g.left.data();
  const float* __restrict R = g.right.data();
  const int64_t W = g.W, HW = g.HW;
  // explicit lanes: gcc keeps these 9 accumulators in vector registers, unlike an omp simd
  // reduction over 9 variables (about 2x slower at 56x56; experiments/results/speed.md)
  constexpr int V = 16;
  T acc[9][V] = {};
  int64_t n = 0;
  for (; n + V <= HW; n += V) {
    for (int j = 0; j < V; ++j) {
      const int64_t m = n + j;
      const T v = gy[m], vl = v * T(L[m]), vr = v * T(R[m]);
      acc[0][j] += vl * x[m - W - 1]; acc[1][j] += v * x[m - W]; acc[2][j] += vr * x[m - W + 1];
      acc[3][j] += vl * x[m - 1];     acc[4][j] += v * x[m];     acc[5][j] += vr * x[m + 1];
      acc[6][j] += vl * x[m + W - 1]; acc[7][j] += v * x[m + W]; acc[8][j] += vr * x[m + W + 1];
    }
  }
  T tail[9] = {};
  for (; n < HW; ++n) {
    const T v = gy[n], vl = v * T(L[n]), vr = v * T(R[n]);
    tail[0] += vl * x[n - W - 1]; tail[1] += v * x[n - W]; tail[2] += vr * x[n - W + 1];
    tail[3] += vl * x[n - 1];     tail[4] += v * x[n];     tail[5] += vr * x[n + 1];
    tail[6] += vl * x[n + W - 1]; tail[7] += v * x[n + W]; tail[8] += vr * x[n + W + 1];
  }
  for (int q = 0; q < 9; ++q) {
    T t = tail[q];
    for (int j = 0; j < V; ++j) t += acc[q][j];
    dk[q] = t;
  }
}

template <typename T>
inline void flip_kernel(const T* k, T* flipped) {
  for (int q = 0; q < 9; ++q) flipped[q] = k[8 - q];
}

// ---- plain depthwise 3x3 (MRLA-base's values) ----------------------------------------------

template <typename T>
void depthwise_forward_kernel(const T* x, const T* K, T* y, int64_t N, int64_t H, int64_t W) {
  const PlaneGeometry geo(H, W);
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> xp(geo.padded_size());
    for (int64_t p = begin; p < end; ++p) {
      load_padded(xp.data(), x + p * geo.HW, geo);
      conv_plane<T, false>(y + p * geo.HW, xp.data(), K + p * 9, geo);
    }
  });
}

template <typename T>
void depthwise_backward_kernel(const T* g, const T* x, const T* K, T* gx, T* gK, int64_t N, int64_t H, int64_t W) {
  const PlaneGeometry geo(H, W);
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> gp(geo.padded_size()), xp(geo.padded_size());
    for (int64_t p = begin; p < end; ++p) {
      load_padded(gp.data(), g + p * geo.HW, geo);
      T flipped[9];
      flip_kernel(K + p * 9, flipped);
      conv_plane<T, false>(gx + p * geo.HW, gp.data(), flipped, geo);
      load_padded(xp.data(), x + p * geo.HW, geo);
      kernel_grad(gp.data() + geo.pad, xp.data(), geo, gK + p * 9);
    }
  });
}

// ---- per-channel weighted sum over a stage's values (MRLA-base) -----------------------------

template <typename T>
void weighted_sum_forward_kernel(const T* w, const std::vector<const T*>& v, T* out, double* sum, double* sumsq,
                                 int64_t N, int64_t HW) {
  const int64_t t = static_cast<int64_t>(v.size());
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      T* __restrict dst = out + p * HW;
      const T w0 = w[p * t];
      const T* __restrict v0 = v[0] + p * HW;
#pragma omp simd
      for (int64_t n = 0; n < HW; ++n) dst[n] = w0 * v0[n];
      for (int64_t j = 1; j < t; ++j) {
        const T wj = w[p * t + j];
        const T* __restrict vj = v[j] + p * HW;
#pragma omp simd
        for (int64_t n = 0; n < HW; ++n) dst[n] += wj * vj[n];
      }
      if (sum) {  // BatchNorm's per-plane sums while the plane is in cache
        T a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
        for (int64_t n = 0; n < HW; ++n) { a += dst[n]; b += dst[n] * dst[n]; }
        sum[p] = a; sumsq[p] = b;
      }
    }
  });
}

// With `bn` set, g is the gradient of o + ReLU(BN(A)) and the gradient of A is formed on the fly:
// gA = a_c * g * [scale_c*A + shift_c > 0] + b_c * A + c_c  (bn = {scale, shift, a, b, c}, per channel).
template <typename T>
void weighted_sum_backward_kernel(const T* g, const T* w, const std::vector<const T*>& v, const std::vector<T*>& gv,
                                  T* gw, const T* A, const T* const* bn, int64_t C, int64_t N, int64_t HW) {
  const int64_t t = static_cast<int64_t>(v.size());
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> scratch(A ? HW : 0);
    for (int64_t p = begin; p < end; ++p) {
      const T* __restrict gp = g + p * HW;
      if (A) {
        const int64_t c = p % C;
        const T sc = bn[0][c], sh = bn[1][c], a = bn[2][c], b = bn[3][c], cc = bn[4][c];
        const T* __restrict ap = A + p * HW;
        T* __restrict ga = scratch.data();
#pragma omp simd
        for (int64_t n = 0; n < HW; ++n) ga[n] = (sc * ap[n] + sh > T(0) ? a * gp[n] : T(0)) + b * ap[n] + cc;
        gp = ga;
      }
      for (int64_t j = 0; j < t; ++j) {
        const T wj = w[p * t + j];
        const T* __restrict vj = v[j] + p * HW;
        T* __restrict gj = gv[j] + p * HW;
        T dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int64_t n = 0; n < HW; ++n) { dot += gp[n] * vj[n]; gj[n] = wj * gp[n]; }
        gw[p * t + j] = dot;
      }
    }
  });
}

// ---- MRLA-light's whole branch ---------------------------------------------------------------

template <typename T>
void light_forward_kernel(const T* o, const T* s, const T* K, const T* lam, T* y, double* sum, double* sumsq,
                    int64_t B, int64_t C, int64_t H, int64_t W) {
  const PlaneGeometry geo(H, W);
  const int64_t HW = geo.HW;
  at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> xp(geo.padded_size());
    for (int64_t p = begin; p < end; ++p) {
      const T* sp = s + p * HW; T* yp = y + p * HW;
      const T l = lam[p % C];
      load_padded(xp.data(), o + p * HW, geo);
      conv_plane<T, false>(yp, xp.data(), K + p * 9, geo);
      T a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
      for (int64_t n = 0; n < HW; ++n) {
        const T v = yp[n] + l * sp[n];
        yp[n] = v;
        a += v; b += v * v;
      }
      sum[p] = a; sumsq[p] = b;
    }
  });
}

// out = o + f(scale_c * y + shift_c), f = identity (light) or ReLU (base)
template <typename T, bool Relu>
void residual_affine_kernel(const T* o, const T* y, const T* scale, const T* shift, T* out,
                            int64_t B, int64_t C, int64_t HW) {
  at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const T a = scale[p % C], c = shift[p % C];
      const T* __restrict op = o + p * HW; const T* __restrict yp = y + p * HW; T* __restrict dst = out + p * HW;
#pragma omp simd
      for (int64_t i = 0; i < HW; ++i) {
        const T v = a * yp[i] + c;
        dst[i] = op[i] + (Relu ? (v > T(0) ? v : T(0)) : v);
      }
    }
  });
}

// per-plane sums of g and g*y; with ReLU, of g masked where ReLU's input was not positive
template <typename T, bool Relu>
void grad_stats_kernel(const T* g, const T* y, const T* scale, const T* shift, double* sum_g, double* sum_gy,
                       int64_t C, int64_t N, int64_t HW) {
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const T* __restrict gp = g + p * HW; const T* __restrict yp = y + p * HW;
      const T sc = Relu ? scale[p % C] : T(0), sh = Relu ? shift[p % C] : T(0);
      T a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
      for (int64_t i = 0; i < HW; ++i) {
        const T gi = Relu ? (sc * yp[i] + sh > T(0) ? gp[i] : T(0)) : gp[i];
        a += gi; b += gi * yp[i];
      }
      sum_g[p] = a; sum_gy[p] = b;
    }
  });
}

template <typename T>
void light_backward_kernel(const T* g, const T* y, const T* o, const T* s, const T* K, const T* lam,
                     const T* A, const T* Bc, const T* Cc, T* go, T* gs, T* gK, double* glam,
                     int64_t B, int64_t C, int64_t H, int64_t W) {
  const PlaneGeometry geo(H, W);
  const int64_t HW = geo.HW;
  at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> gyp(geo.padded_size(), T(0)), xp(geo.padded_size());
    T* __restrict gy = gyp.data() + geo.pad;
    const float* __restrict L = geo.left.data();
    const float* __restrict R = geo.right.data();
    for (int64_t p = begin; p < end; ++p) {
      const int64_t c = p % C;
      const T a = A[c], b = Bc[c], cc = Cc[c], l = lam[c];
      const T* __restrict gp = g + p * HW; const T* __restrict yp = y + p * HW; const T* __restrict sp = s + p * HW;
      T* __restrict gsp = gs + p * HW;
      // gradient of the BatchNorm input (gy), of s, and lambda's partial sum
      T dl = 0;
#pragma omp simd reduction(+ : dl)
      for (int64_t n = 0; n < HW; ++n) {
        const T v = a * gp[n] + b * yp[n] + cc;
        gy[n] = v;
        gsp[n] = l * v;
        dl += v * sp[n];
      }
      glam[p] = dl;
      // gradient of o: the residual path plus the depthwise conv transposed (the kernel flipped)
      T flipped[9];
      flip_kernel(K + p * 9, flipped);
      T* __restrict gop = go + p * HW;
      std::copy(gp, gp + HW, gop);
      conv_plane<T, true>(gop, gyp.data(), flipped, geo);
      load_padded(xp.data(), o + p * HW, geo);
      kernel_grad(gy, xp.data(), geo, gK + p * 9);
    }
  });
}

void check(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(), name, " must be a contiguous CPU tensor");
}

}  // namespace

std::vector<torch::Tensor> light_forward(torch::Tensor o, torch::Tensor s, torch::Tensor K, torch::Tensor lam) {
  check(o, "o"); check(s, "s"); check(K, "K"); check(lam, "lambda");
  const int64_t B = o.size(0), C = o.size(1), H = o.size(2), W = o.size(3);
  TORCH_CHECK(s.sizes() == o.sizes() && K.numel() == B * C * 9 && lam.numel() == C, "shape mismatch");
  auto y = torch::empty_like(o);
  auto opts = o.options().dtype(torch::kFloat64);
  auto sum = torch::empty({B, C}, opts), sumsq = torch::empty({B, C}, opts);
  AT_DISPATCH_FLOATING_TYPES(o.scalar_type(), "mrla_light_forward", [&] {
    light_forward_kernel<scalar_t>(o.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), K.data_ptr<scalar_t>(),
                             lam.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), sum.data_ptr<double>(),
                             sumsq.data_ptr<double>(), B, C, H, W);
  });
  return {y, sum, sumsq};
}

torch::Tensor residual_affine(torch::Tensor o, torch::Tensor y, torch::Tensor scale, torch::Tensor shift, bool relu) {
  check(o, "o"); check(y, "y"); check(scale, "scale"); check(shift, "shift");
  auto out = torch::empty_like(o);
  AT_DISPATCH_FLOATING_TYPES(o.scalar_type(), "mrla_residual_affine", [&] {
    auto fn = relu ? residual_affine_kernel<scalar_t, true> : residual_affine_kernel<scalar_t, false>;
    fn(o.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), scale.data_ptr<scalar_t>(), shift.data_ptr<scalar_t>(),
       out.data_ptr<scalar_t>(), o.size(0), o.size(1), o.size(2) * o.size(3));
  });
  return out;
}

std::vector<torch::Tensor> grad_stats(torch::Tensor g, torch::Tensor y, torch::Tensor scale, torch::Tensor shift,
                                      bool relu) {
  check(g, "grad"); check(y, "y"); check(scale, "scale"); check(shift, "shift");
  const int64_t B = y.size(0), C = y.size(1);
  auto opts = y.options().dtype(torch::kFloat64);
  auto sum_g = torch::empty({B, C}, opts), sum_gy = torch::empty({B, C}, opts);
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "mrla_grad_stats", [&] {
    auto fn = relu ? grad_stats_kernel<scalar_t, true> : grad_stats_kernel<scalar_t, false>;
    fn(g.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), scale.data_ptr<scalar_t>(), shift.data_ptr<scalar_t>(),
       sum_g.data_ptr<double>(), sum_gy.data_ptr<double>(), C, B * C, y.size(2) * y.size(3));
  });
  return {sum_g, sum_gy};
}

std::vector<torch::Tensor> light_backward(torch::Tensor g, torch::Tensor y, torch::Tensor o, torch::Tensor s,
                                    torch::Tensor K, torch::Tensor lam, torch::Tensor A, torch::Tensor Bc,
                                    torch::Tensor Cc) {
  for (auto* t : {&g, &y, &o, &s, &K, &lam, &A, &Bc, &Cc}) check(*t, "input");
  const int64_t B = o.size(0), C = o.size(1), H = o.size(2), W = o.size(3);
  auto go = torch::empty_like(o), gs = torch::empty_like(s), gK = torch::empty_like(K);
  auto glam = torch::empty({B, C}, o.options().dtype(torch::kFloat64));
  AT_DISPATCH_FLOATING_TYPES(o.scalar_type(), "mrla_light_backward", [&] {
    light_backward_kernel<scalar_t>(g.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), o.data_ptr<scalar_t>(),
                              s.data_ptr<scalar_t>(), K.data_ptr<scalar_t>(), lam.data_ptr<scalar_t>(),
                              A.data_ptr<scalar_t>(), Bc.data_ptr<scalar_t>(), Cc.data_ptr<scalar_t>(),
                              go.data_ptr<scalar_t>(), gs.data_ptr<scalar_t>(), gK.data_ptr<scalar_t>(),
                              glam.data_ptr<double>(), B, C, H, W);
  });
  return {go, gs, gK, glam};
}

torch::Tensor depthwise_forward(torch::Tensor x, torch::Tensor K) {
  check(x, "x"); check(K, "K");
  TORCH_CHECK(K.numel() == x.size(0) * x.size(1) * 9, "K must hold one 3x3 kernel per (sample, channel)");
  auto y = torch::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mrla_depthwise_forward", [&] {
    depthwise_forward_kernel<scalar_t>(x.data_ptr<scalar_t>(), K.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
                                       x.size(0) * x.size(1), x.size(2), x.size(3));
  });
  return y;
}

std::vector<torch::Tensor> depthwise_backward(torch::Tensor g, torch::Tensor x, torch::Tensor K) {
  check(g, "grad"); check(x, "x"); check(K, "K");
  auto gx = torch::empty_like(x), gK = torch::empty_like(K);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mrla_depthwise_backward", [&] {
    depthwise_backward_kernel<scalar_t>(g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), K.data_ptr<scalar_t>(),
                                        gx.data_ptr<scalar_t>(), gK.data_ptr<scalar_t>(), x.size(0) * x.size(1),
                                        x.size(2), x.size(3));
  });
  return {gx, gK};
}

std::vector<torch::Tensor> weighted_sum(torch::Tensor w, std::vector<torch::Tensor> values, bool stats) {
  check(w, "weights");
  for (auto& v : values) { check(v, "value"); TORCH_CHECK(v.sizes() == values[0].sizes(), "values differ in shape"); }
  TORCH_CHECK(w.numel() == values[0].size(0) * values[0].size(1) * (int64_t)values.size(), "weights must be [B, C, t]");
  auto out = torch::empty_like(values[0]);
  const int64_t B = out.size(0), C = out.size(1);
  auto opts = out.options().dtype(torch::kFloat64);
  auto sum = torch::empty({stats ? B : 0, C}, opts), sumsq = torch::empty({stats ? B : 0, C}, opts);
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "mrla_weighted_sum", [&] {
    std::vector<const scalar_t*> v;
    for (auto& t : values) v.push_back(t.data_ptr<scalar_t>());
    weighted_sum_forward_kernel<scalar_t>(w.data_ptr<scalar_t>(), v, out.data_ptr<scalar_t>(),
                                          stats ? sum.data_ptr<double>() : nullptr,
                                          stats ? sumsq.data_ptr<double>() : nullptr, B * C, out.size(2) * out.size(3));
  });
  return {out, sum, sumsq};
}

// bn: empty, or {A, scale, shift, a, b, c} (see weighted_sum_backward_kernel)
std::vector<torch::Tensor> weighted_sum_backward(torch::Tensor g, torch::Tensor w, std::vector<torch::Tensor> values,
                                                 std::vector<torch::Tensor> bn) {
  check(g, "grad"); check(w, "weights");
  for (auto& v : values) check(v, "value");
  for (auto& t : bn) check(t, "bn");
  TORCH_CHECK(bn.empty() || bn.size() == 6, "bn must be empty or {A, scale, shift, a, b, c}");
  std::vector<torch::Tensor> out;
  for (auto& v : values) out.push_back(torch::empty_like(v));
  auto gw = torch::empty_like(w);
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "mrla_weighted_sum_backward", [&] {
    std::vector<const scalar_t*> v, coeffs;
    std::vector<scalar_t*> gv;
    for (auto& t : values) v.push_back(t.data_ptr<scalar_t>());
    for (auto& t : out) gv.push_back(t.data_ptr<scalar_t>());
    for (size_t i = 1; i < bn.size(); ++i) coeffs.push_back(bn[i].data_ptr<scalar_t>());
    weighted_sum_backward_kernel<scalar_t>(g.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(), v, gv, gw.data_ptr<scalar_t>(),
                                           bn.empty() ? nullptr : bn[0].data_ptr<scalar_t>(),
                                           bn.empty() ? nullptr : coeffs.data(), g.size(1), g.size(0) * g.size(1),
                                           g.size(2) * g.size(3));
  });
  out.push_back(gw);
  return out;
}

// ---- The Q/K side of both forms: gate (light) and attention (base) on [B, C] tensors ---------------
//
// The plain path runs MRLA-light's gate as ~90 ATen calls forward and ~120 back (the Conv1d Q/K
// projection's windows, one product, per-head scores, sigmoid, the kernels scaled per head), and
// MRLA-base's attention likewise; inside a training step each call costs ~20 us of dispatch and
// interpreter, which made them 8% of the step (experiments/results/speed.md). Here copies, single
// products and the sums whose order ATen fixes in plain loops are loops, and the ATen calls left
// are those whose rounding is the library's own (mm, sigmoid, softmax, the batch and head sums),
// called on the plain path's operands in its layouts: the results are bit for bit the plain
// path's (tests/test_cpu_kernels.py), which the shipped tables rely on. No fused multiply-add may
// merge two operations that ATen rounds apart.
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")

// the Conv1d weights of Q and K side by side, [k, 2] (the plain path's torch.stack)
torch::Tensor projection_weights(const torch::Tensor& wq, const torch::Tensor& wk) {
  const int64_t k = wq.numel();
  auto w = torch::empty({k, 2}, wq.options());
  AT_DISPATCH_FLOATING_TYPES(wq.scalar_type(), "mrla_projection_weights", [&] {
    const scalar_t* q = wq.data_ptr<scalar_t>(); const scalar_t* kk = wk.data_ptr<scalar_t>();
    scalar_t* o = w.data_ptr<scalar_t>();
    for (int64_t j = 0; j < k; ++j) { o[2 * j] = q[j]; o[2 * j + 1] = kk[j]; }
  });
  return w;
}

// {windows [B*C, k], qk [B*C, 2]}: windows[b*C + c, j] = y[b, c + j - pad] (zero outside) times
// [Wq Wk], the Conv1d projections as one product (ATen's mm, as on the plain path)
std::vector<torch::Tensor> qk_projection(const torch::Tensor& y, const torch::Tensor& wq, const torch::Tensor& wk) {
  const int64_t B = y.size(0), C = y.size(1), k = wq.numel(), pad = (k - 1) / 2;
  TORCH_CHECK(y.dim() == 2 && wk.numel() == k && k % 2 == 1, "shape mismatch (the Conv1d kernel must be odd)");
  auto win = torch::empty({B * C, k}, y.options());
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "mrla_conv1d_windows", [&] {
    const scalar_t* src = y.data_ptr<scalar_t>();
    scalar_t* dst = win.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t j = 0; j < k; ++j) {
          const int64_t i = c + j - pad;
          dst[(b * C + c) * k + j] = (i >= 0 && i < C) ? src[b * C + i] : scalar_t(0);
        }
  });
  return {win, at::mm(win, projection_weights(wq, wk))};
}

// {gradient of y [B, C], of Wq [k], of Wk [k]} from that of qk [B*C, 2]: mm's backward as autograd
// forms it, then the windows' gradient folded back (unfold_backward's order: from zero, windows in
// increasing order)
std::vector<torch::Tensor> qk_projection_backward(const torch::Tensor& gqk, const torch::Tensor& win,
                                                  const torch::Tensor& wq, const torch::Tensor& wk, int64_t B,
                                                  int64_t C) {
  const int64_t k = wq.numel(), pad = (k - 1) / 2;
  auto gwin = at::mm(gqk, projection_weights(wq, wk).t());                     // [B*C, k]
  auto gw = at::mm(win.t(), gqk);                                              // [k, 2]
  auto gy = torch::empty({B, C}, gqk.options());
  auto gq = torch::empty({k}, gqk.options()), gk = torch::empty({k}, gqk.options());
  AT_DISPATCH_FLOATING_TYPES(gqk.scalar_type(), "mrla_qk_projection_backward", [&] {
    const scalar_t* g = gwin.data_ptr<scalar_t>(); scalar_t* o = gy.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c) {
        const int64_t i = c + pad;  // position in the padded row; window t covers i - k + 1 <= t <= i
        scalar_t acc = 0;
        for (int64_t t = std::max<int64_t>(0, i - k + 1); t <= std::min<int64_t>(i, C - 1); ++t)
          acc += g[(b * C + t) * k + (i - t)];
        o[b * C + c] = acc;
      }
    const scalar_t* w = gw.data_ptr<scalar_t>();
    for (int64_t j = 0; j < k; ++j) { gq.data_ptr<scalar_t>()[j] = w[2 * j]; gk.data_ptr<scalar_t>()[j] = w[2 * j + 1]; }
  });
  return {gy, gq, gk};
}

// ATen's bmm below this many multiply-adds per output matrix (contraction * rows * columns) runs a
// plain loop: from zero, one product added at a time in the contraction's order. Its results are
// reproduced by `small_dot`; above it, the library's gemm is called instead.
constexpr int64_t kAtenSmallBmm = 400;

// out[i, j] = sum_n a(i, n) * b(n, j) for one batch entry, as ATen's small-bmm loop
template <typename T, typename A, typename Bf>
inline T small_dot(int64_t n, A a, Bf b) {
  T acc = 0;
  for (int64_t m = 0; m < n; ++m) acc += a(m) * b(m);
  return acc;
}

// returns {kernels [B*C, 9], windows [B*C, k], qk [B*C, 2], gate [B, g]}
std::vector<torch::Tensor> light_gate(torch::Tensor y, torch::Tensor wq, torch::Tensor wk, torch::Tensor wv,
                                      int64_t heads, double scale) {
  check(y, "pooled"); check(wq, "Wq"); check(wk, "Wk"); check(wv, "Wv");
  const int64_t B = y.size(0), C = y.size(1), d = C / heads;
  TORCH_CHECK(wv.numel() == C * 9 && C % heads == 0, "shape mismatch");
  auto proj = qk_projection(y, wq, wk);
  auto& qk = proj[1];
  torch::Tensor scores;  // <Q_h, K_h> * scale, [B, g]
  if (d < kAtenSmallBmm) {
    scores = torch::empty({B, heads}, y.options());
    AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "mrla_light_scores", [&] {
      const scalar_t* p = qk.data_ptr<scalar_t>(); scalar_t* s = scores.data_ptr<scalar_t>();
      const scalar_t sc = static_cast<scalar_t>(scale);
      for (int64_t bh = 0; bh < B * heads; ++bh) {
        const scalar_t* row = p + 2 * bh * d;  // (q, k) pairs of this head's channels
        s[bh] = small_dot<scalar_t>(d, [&](int64_t m) { return row[2 * m]; }, [&](int64_t m) { return row[2 * m + 1]; }) * sc;
      }
    });
  } else {
    auto qk3 = qk.view({B, C, 2});
    scores = at::einsum("bgd,bgd->bg", {qk3.select(2, 0).view({B, heads, d}), qk3.select(2, 1).view({B, heads, d})}).mul(scale);
  }
  auto gate = at::sigmoid(scores);
  auto kernels = torch::empty({B * C, 9}, y.options());
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "mrla_light_gate", [&] {
    const scalar_t* g = gate.data_ptr<scalar_t>();
    const scalar_t* v = wv.data_ptr<scalar_t>();
    scalar_t* out = kernels.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c) {
        const scalar_t s = g[b * heads + c / d];
        for (int q = 0; q < 9; ++q) out[(b * C + c) * 9 + q] = v[c * 9 + q] * s;
      }
  });
  return {kernels, proj[0], qk, gate};
}

// gradients {pooled [B, C], Wq [k], Wk [k], Wv [C, 9]} from the kernels' gradient gK [B*C, 9]
std::vector<torch::Tensor> light_gate_backward(torch::Tensor gK, torch::Tensor win, torch::Tensor qk,
                                               torch::Tensor gate, torch::Tensor wq, torch::Tensor wk,
                                               torch::Tensor wv, int64_t heads, double scale) {
  for (auto* t : {&gK, &win, &qk, &gate, &wq, &wk, &wv}) check(*t, "input");
  const int64_t B = gate.size(0), C = wv.size(0), d = C / heads;
  auto gw_full = torch::empty({B, C, 9}, gK.options()), gs_full = torch::empty({B, C, 9}, gK.options());
  AT_DISPATCH_FLOATING_TYPES(gK.scalar_type(), "mrla_light_gate_products", [&] {
    const scalar_t* g = gK.data_ptr<scalar_t>(); const scalar_t* s = gate.data_ptr<scalar_t>();
    const scalar_t* v = wv.data_ptr<scalar_t>();
    scalar_t* gw = gw_full.data_ptr<scalar_t>(); scalar_t* gs = gs_full.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c) {
        const scalar_t sc = s[b * heads + c / d];
        for (int q = 0; q < 9; ++q) {
          const int64_t i = (b * C + c) * 9 + q;
          gw[i] = g[i] * sc;            // weight * scale: d/dweight, summed over the batch below
          gs[i] = g[i] * v[c * 9 + q];  // d/dscale, summed over the 9 taps below
        }
      }
  });
  auto gwv = gw_full.sum({0}, true).view(wv.sizes());
  auto gscale = gs_full.view({B, C, 1, 1, 9}).sum({2, 3, 4}, true).view({B, heads, d});  // the autograd sum's shape
  auto ggate = gscale.sum({2}, true).view({B, heads});                       // repeat_interleave's backward
  auto gscores = at::sigmoid_backward(ggate, gate);
  auto gqk = torch::empty({B * C, 2}, gK.options());
  AT_DISPATCH_FLOATING_TYPES(gK.scalar_type(), "mrla_light_gate_scores", [&] {
    const scalar_t* gsc = gscores.data_ptr<scalar_t>(); const scalar_t* p = qk.data_ptr<scalar_t>();
    scalar_t* out = gqk.data_ptr<scalar_t>();
    const scalar_t sc = static_cast<scalar_t>(scale);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c) {
        const scalar_t gh = gsc[b * heads + c / d] * sc;  // through the scores' scaling
        const int64_t i = b * C + c;
        out[2 * i] = gh * p[2 * i + 1];                   // d/dq = g * key (einsum's bmm, one product)
        out[2 * i + 1] = gh * p[2 * i];                   // d/dkey = g * q
      }
  });
  auto grads = qk_projection_backward(gqk, win, wq, wk, B, C);
  grads.push_back(gwv);
  return grads;
}

// returns {weights [B, C, t], key [B, C], windows, qk, keys [B, t, C], attn [B, g, t]}
std::vector<torch::Tensor> base_attention(torch::Tensor y, torch::Tensor wq, torch::Tensor wk,
                                          std::vector<torch::Tensor> earlier_keys, int64_t heads, double scale) {
  check(y, "pooled"); check(wq, "Wq"); check(wk, "Wk");
  const int64_t B = y.size(0), C = y.size(1), d = C / heads;
  const int64_t t = static_cast<int64_t>(earlier_keys.size()) + 1;
  TORCH_CHECK(C % heads == 0, "shape mismatch");
  for (auto& key : earlier_keys) TORCH_CHECK(key.sizes() == y.sizes(), "keys must be [B, C]");
  auto proj = qk_projection(y, wq, wk);
  auto& qk = proj[1];
  auto qk3 = qk.view({B, C, 2});
  earlier_keys.push_back(qk3.select(2, 1));
  auto keys = torch::stack(earlier_keys, 1);                                    // [B, t, C]
  torch::Tensor scores;                                                         // [B, g, t]
  if (d * t < kAtenSmallBmm) {
    scores = torch::empty({B, heads, t}, y.options());
    AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "mrla_base_scores", [&] {
      const scalar_t* p = qk.data_ptr<scalar_t>(); const scalar_t* K = keys.data_ptr<scalar_t>();
      scalar_t* s = scores.data_ptr<scalar_t>();
      const scalar_t sc = static_cast<scalar_t>(scale);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < heads; ++h)
          for (int64_t j = 0; j < t; ++j) {
            const scalar_t* q = p + 2 * (b * C + h * d);
            const scalar_t* kj = K + (b * t + j) * C + h * d;
            s[(b * heads + h) * t + j] =
                small_dot<scalar_t>(d, [&](int64_t m) { return q[2 * m]; }, [&](int64_t m) { return kj[m]; }) * sc;
          }
    });
  } else {
    scores = at::einsum("bgd,btgd->bgt", {qk3.select(2, 0).view({B, heads, d}), keys.view({B, t, heads, d})}).mul(scale);
  }
  auto attn = at::softmax(scores, -1);
  auto weights = torch::empty({B, C, t}, y.options());
  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "mrla_base_attention", [&] {
    const scalar_t* a = attn.data_ptr<scalar_t>();
    scalar_t* out = weights.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t j = 0; j < t; ++j) out[(b * C + c) * t + j] = a[(b * heads + c / d) * t + j];
  });
  return {weights, keys.select(1, t - 1).contiguous(), proj[0], qk, keys, attn};
}

// gradients {pooled, Wq [k], Wk [k], earlier keys...} from those of the weights (gw [B, C, t]) and of
// this block's key (gkey [B, C], what later blocks sent back; empty where none attends to it)
std::vector<torch::Tensor> base_attention_backward(torch::Tensor gw, torch::Tensor gkey, torch::Tensor win,
                                                   torch::Tensor qk, torch::Tensor keys, torch::Tensor attn,
                                                   torch::Tensor wq, torch::Tensor wk, int64_t heads, double scale) {
  for (auto* x : {&gw, &win, &qk, &keys, &attn, &wq, &wk}) check(*x, "input");
  const int64_t B = keys.size(0), t = keys.size(1), C = keys.size(2), d = C / heads;
  auto gattn = gw.view({B, heads, d, t}).sum({2}, true).view({B, heads, t});  // repeat_interleave's backward
  auto gscores = at::_softmax_backward_data(gattn, attn, -1, attn.scalar_type());
  auto gsc = torch::empty({B * heads, 1, t}, gw.options());                    // through the scores' scaling
  auto gkeys = torch::empty({B, t, C}, gw.options());
  auto gqk = torch::empty({B * C, 2}, gw.options());
  auto gq = torch::empty({B, C}, gw.options());
  AT_DISPATCH_FLOATING_TYPES(gw.scalar_type(), "mrla_base_attention_scores", [&] {
    const scalar_t* g = gscores.data_ptr<scalar_t>(); scalar_t* o = gsc.data_ptr<scalar_t>();
    const scalar_t sc = static_cast<scalar_t>(scale);
    for (int64_t i = 0; i < B * heads * t; ++i) o[i] = g[i] * sc;
    // d/dkeys = g * q: one product each (einsum's bmm with an inner size of 1)
    const scalar_t* p = qk.data_ptr<scalar_t>(); scalar_t* gk = gkeys.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < t; ++j)
        for (int64_t c = 0; c < C; ++c) gk[(b * t + j) * C + c] = p[2 * (b * C + c)] * o[(b * heads + c / d) * t + j];
    // d/dq: einsum's bmm backward, [B*g, 1, t] x [B*g, t, d], summed over the t keys
    if (d * t < kAtenSmallBmm) {
      const scalar_t* K = keys.data_ptr<scalar_t>(); scalar_t* q = gq.data_ptr<scalar_t>();
      for (int64_t b = 0; b < B; ++b)
        for (int64_t c = 0; c < C; ++c) {
          const scalar_t* row = o + (b * heads + c / d) * t;
          q[b * C + c] = small_dot<scalar_t>(t, [&](int64_t j) { return row[j]; },
                                             [&](int64_t j) { return K[(b * t + j) * C + c]; });
        }
    }
  });
  if (d * t >= kAtenSmallBmm)  // einsum's right operand as it lays it out for its bmm: [B*g, d, t]
    gq = at::bmm(gsc, keys.view({B, t, heads, d}).permute({0, 2, 3, 1}).reshape({B * heads, d, t}).transpose(1, 2))
             .view({B, C});
  auto gown = gkeys.select(1, t - 1);
  auto gk_total = gkey.numel() ? gkey + gown : gown;  // autograd's order: later blocks' sum, then this one's
  AT_DISPATCH_FLOATING_TYPES(gw.scalar_type(), "mrla_base_attention_qk", [&] {
    const scalar_t* a = gq.data_ptr<scalar_t>(); scalar_t* o = gqk.data_ptr<scalar_t>();
    auto kt = gk_total.contiguous();
    const scalar_t* b = kt.data_ptr<scalar_t>();
    for (int64_t i = 0; i < B * C; ++i) { o[2 * i] = a[i]; o[2 * i + 1] = b[i]; }
  });
  auto out = qk_projection_backward(gqk, win, wq, wk, B, C);
  for (int64_t j = 0; j + 1 < t; ++j) out.push_back(gkeys.select(1, j).contiguous());
  return out;
}

// ---- BatchNorm's per-channel constants for the fused branches (float64) ----------------------------
//
// From the kernels' per-plane sums to the per-channel scale and shift (updating the running
// statistics as nn.BatchNorm2d does), and back to the coefficients of the input gradient. About 35
// ATen calls on [C] tensors each way on the plain formulas; here one loop over the channels, with the
// batch sums left to ATen (its summation order) and every other operation rounded once, in the order
// the formulas in mrla_nas/layers/fused_bn.py write it (inside the fp-contract-off region above).

// returns {mean, invstd} (float64, [C]) and {scale, shift} in gamma's dtype
std::vector<torch::Tensor> bn_constants(torch::Tensor psum, torch::Tensor psumsq, int64_t n, torch::Tensor gamma,
                                        torch::Tensor beta, torch::Tensor running_mean, torch::Tensor running_var,
                                        bool training, double momentum, double eps) {
  for (auto* t : {&gamma, &beta, &running_mean, &running_var}) check(*t, "BatchNorm tensor");
  const int64_t C = gamma.numel();
  auto opts = gamma.options().dtype(torch::kFloat64);
  auto mean = torch::empty({C}, opts), invstd = torch::empty({C}, opts);
  auto scale_t = torch::empty({C}, gamma.options()), shift_t = torch::empty({C}, gamma.options());
  torch::Tensor s1, s2;
  if (training) { s1 = psum.sum(0); s2 = psumsq.sum(0); }
  double* M = mean.data_ptr<double>(); double* I = invstd.data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(gamma.scalar_type(), "mrla_bn_constants", [&] {
    const scalar_t* g = gamma.data_ptr<scalar_t>(); const scalar_t* b = beta.data_ptr<scalar_t>();
    scalar_t* rm = running_mean.data_ptr<scalar_t>(); scalar_t* rv = running_var.data_ptr<scalar_t>();
    const scalar_t keep = static_cast<scalar_t>(1.0 - momentum);
    const double unbias = momentum * static_cast<double>(n) / static_cast<double>(std::max<int64_t>(n - 1, 1));
    for (int64_t c = 0; c < C; ++c) {
      double m, is;
      if (training && n == 0) {  // an empty batch: no statistics, running ones kept (as nn.BatchNorm2d)
        m = 0.0;
        is = 1.0 / std::sqrt(eps);
      } else if (training) {
        const double* a1 = s1.data_ptr<double>(); const double* a2 = s2.data_ptr<double>();
        m = a1[c] / static_cast<double>(n);
        const double sq = m * m;
        double v = a2[c] / static_cast<double>(n) - sq;
        v = v < 0 ? 0.0 : v;
        is = 1.0 / std::sqrt(v + eps);
        const scalar_t rm_keep = rm[c] * keep, rv_keep = rv[c] * keep;
        const double dm = m * momentum, dv = v * unbias;
        rm[c] = rm_keep + static_cast<scalar_t>(dm);
        rv[c] = rv_keep + static_cast<scalar_t>(dv);
      } else {
        m = static_cast<double>(rm[c]);
        is = 1.0 / std::sqrt(static_cast<double>(rv[c]) + eps);
      }
      const double sc = static_cast<double>(g[c]) * is;
      const double ms = m * sc;
      M[c] = m; I[c] = is;
      scale_t.data_ptr<scalar_t>()[c] = static_cast<scalar_t>(sc);
      shift_t.data_ptr<scalar_t>()[c] = static_cast<scalar_t>(static_cast<double>(b[c]) - ms);
    }
  });
  return {mean, invstd, scale_t, shift_t};
}

// returns {d/dgamma, d/dbeta, a, b, c} in gamma's dtype, with dL/dy = a*g + b*y + c per channel
std::vector<torch::Tensor> bn_backward_constants(torch::Tensor mean, torch::Tensor invstd, torch::Tensor gamma,
                                                 torch::Tensor sum_g, torch::Tensor sum_gy, int64_t n, bool training) {
  check(mean, "mean"); check(invstd, "invstd"); check(gamma, "gamma");
  const int64_t C = gamma.numel();
  auto sg = sum_g.sum(0), sgy = sum_gy.sum(0);
  std::vector<torch::Tensor> out;
  for (int i = 0; i < 5; ++i) out.push_back(torch::empty({C}, gamma.options()));
  const double* M = mean.data_ptr<double>(); const double* I = invstd.data_ptr<double>();
  const double* G = sg.data_ptr<double>(); const double* GY = sgy.data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(gamma.scalar_type(), "mrla_bn_backward_constants", [&] {
    const scalar_t* gm = gamma.data_ptr<scalar_t>();
    scalar_t* o[5];
    for (int i = 0; i < 5; ++i) o[i] = out[i].data_ptr<scalar_t>();
    for (int64_t c = 0; c < C; ++c) {
      const double mg = M[c] * G[c];
      const double dgamma = (GY[c] - mg) * I[c];
      const double a = static_cast<double>(gm[c]) * I[c];
      double b = 0.0, cc = 0.0;
      if (training && n > 0) {
        const double na = -a;
        const double t1 = na * I[c], t2 = t1 * dgamma;
        b = t2 / static_cast<double>(n);
        const double u1 = na * G[c], u2 = u1 / static_cast<double>(n), bm = b * M[c];
        cc = u2 - bm;
      }
      o[0][c] = static_cast<scalar_t>(dgamma); o[1][c] = static_cast<scalar_t>(G[c]);
      o[2][c] = static_cast<scalar_t>(a); o[3][c] = static_cast<scalar_t>(b); o[4][c] = static_cast<scalar_t>(cc);
    }
  });
  return out;
}
#pragma GCC pop_options

// ---- MRLA-light in a DeiT block: the value path in token layout -------------------------------------
//
//   out[:, :P] = u[:, :P]      out[:, P + n, c] = gate[b, c] * GELU(z[b, n, c]) + lambda[c] * p[b, P + n, c]
//   z = dw3x3 over the s x s grid of u's patch tokens with Wv's kernel K[c, 9] (zero padding 1)
//
// PyTorch runs it as ~10 passes each way over [B, N, C] tensors (the grid's transposed copy, the
// conv, GELU, the gate, lambda, the sum, the CLS token's concatenation, and their backward). Here
// each sample is one pass forward and two back (the second is the transposed conv of dz, which sits
// in cache), with C innermost: every tap is a contiguous multiply-add over the channels. The exact
// GELU's erf and exp are written out so that the loops vectorise: in float32 erf as ATen's vectorised
// one (Abramowitz and Stegun 7.1.26, |error| < 1.5e-7), in float64 the C library's. The backward
// recomputes z (cheaper than storing it) and shares erf's exponential with GELU's derivative.
namespace {

inline float exp_vec(float x) {  // |relative error| ~1e-7 on [-87, 88]; clamped outside
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f; p = p * r + 1.0f / 120.0f; p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f; p = p * r + 0.5f; p = p * r + 1.0f; p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}
inline double exp_vec(double x) { return std::exp(x); }

// Phi(z) = 0.5 * (1 + erf(z / sqrt 2)) and exp(-z^2 / 2): GELU is z * Phi(z), its derivative
// Phi(z) + z * exp(-z^2 / 2) / sqrt(2 pi), and erf's own exponential is that same exp
inline void gelu_parts(float z, float& cdf, float& e) {
  const float x = z * float(M_SQRT1_2), a = std::fabs(x);
  const float t = 1.0f / (0.3275911f * a + 1.0f);
  const float r = (((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f;
  e = exp_vec(-x * x);
  cdf = 0.5f * (1.0f + std::copysign(1.0f - r * t * e, x));
}
inline void gelu_parts(double z, double& cdf, double& e) {
  cdf = 0.5 * (1.0 + std::erf(z * M_SQRT1_2));
  e = std::exp(-0.5 * z * z);
}

template <typename T> inline T gelu_of(T z) {
  T cdf, e;
  gelu_parts(z, cdf, e);
  return z * cdf;
}

// z for one patch position (i, j) of sample u (tokens [N, C], patches from row P), taps in order
template <typename T>
inline void token_conv(T* __restrict z, const T* __restrict u, const T* __restrict Kt, int64_t i, int64_t j,
                       int64_t s, int64_t P, int64_t C) {
  for (int64_t c = 0; c < C; ++c) z[c] = T(0);
  for (int64_t di = -1; di <= 1; ++di) {
    if (i + di < 0 || i + di >= s) continue;
    for (int64_t dj = -1; dj <= 1; ++dj) {
      if (j + dj < 0 || j + dj >= s) continue;
      const T* un = u + (P + (i + di) * s + (j + dj)) * C;
      const T* k = Kt + ((di + 1) * 3 + (dj + 1)) * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) z[c] += k[c] * un[c];
    }
  }
}

template <typename T>
void token_light_forward_kernel(const T* u, const T* p, const T* Kt, const T* gate, const T* lam, T* out,
                                int64_t B, int64_t N, int64_t C, int64_t P, int64_t s) {
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> z(C);
    for (int64_t b = begin; b < end; ++b) {
      const T* ub = u + b * N * C;
      const T* gb = gate + b * C;
      std::copy(ub, ub + P * C, out + b * N * C);
      for (int64_t i = 0; i < s; ++i)
        for (int64_t j = 0; j < s; ++j) {
          const int64_t n = P + i * s + j;
          token_conv(z.data(), ub, Kt, i, j, s, P, C);
          const T* pn = p + (b * N + n) * C;
          T* on = out + (b * N + n) * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) on[c] = gb[c] * gelu_of(z[c]) + lam[c] * pn[c];
        }
    }
  });
}

template <typename T>
void token_light_backward_kernel(const T* g, const T* u, const T* p, const T* Kt, const T* gate, const T* lam,
                                 T* gu, T* gp, T* gK, T* ggate, T* glam, int64_t B, int64_t N, int64_t C,
                                 int64_t P, int64_t s) {
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> z(C), dz(s * s * C);
    for (int64_t b = begin; b < end; ++b) {
      const T* ub = u + b * N * C;
      const T* gtok = g + b * N * C;
      const T* gb = gate + b * C;
      T* gKb = gK + b * 9 * C;  // per-sample partial sums, added over the batch by the caller
      T* glb = glam + b * C;
      T* ggb = ggate + b * C;
      std::fill(gKb, gKb + 9 * C, T(0));
      std::fill(glb, glb + C, T(0));
      std::fill(ggb, ggb + C, T(0));
      std::copy(gtok, gtok + P * C, gu + b * N * C);
      std::fill(gp + b * N * C, gp + (b * N + P) * C, T(0));
      for (int64_t i = 0; i < s; ++i)
        for (int64_t j = 0; j < s; ++j) {
          const int64_t n = P + i * s + j;
          token_conv(z.data(), ub, Kt, i, j, s, P, C);
          const T* gn = gtok + n * C;
          const T* pn = p + (b * N + n) * C;
          T* gpn = gp + (b * N + n) * C;
          T* dzn = dz.data() + (i * s + j) * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) {
            T cdf, e;
            gelu_parts(z[c], cdf, e);
            ggb[c] += gn[c] * (z[c] * cdf);
            glb[c] += gn[c] * pn[c];
            gpn[c] = lam[c] * gn[c];
            dzn[c] = gn[c] * gb[c] * (cdf + z[c] * T(0.3989422804014327) * e);
          }
          for (int64_t di = -1; di <= 1; ++di) {
            if (i + di < 0 || i + di >= s) continue;
            for (int64_t dj = -1; dj <= 1; ++dj) {
              if (j + dj < 0 || j + dj >= s) continue;
              const T* un = ub + (P + (i + di) * s + (j + dj)) * C;
              T* k = gKb + ((di + 1) * 3 + (dj + 1)) * C;
#pragma omp simd
              for (int64_t c = 0; c < C; ++c) k[c] += dzn[c] * un[c];
            }
          }
        }
      // u's patch gradient: the transposed conv of dz (position m gets K[t] * dz[m - t])
      for (int64_t i = 0; i < s; ++i)
        for (int64_t j = 0; j < s; ++j) {
          T* gm = gu + (b * N + P + i * s + j) * C;
          for (int64_t c = 0; c < C; ++c) gm[c] = T(0);
          for (int64_t di = -1; di <= 1; ++di) {
            if (i - di < 0 || i - di >= s) continue;
            for (int64_t dj = -1; dj <= 1; ++dj) {
              if (j - dj < 0 || j - dj >= s) continue;
              const T* d = dz.data() + ((i - di) * s + (j - dj)) * C;
              const T* k = Kt + ((di + 1) * 3 + (dj + 1)) * C;
#pragma omp simd
              for (int64_t c = 0; c < C; ++c) gm[c] += k[c] * d[c];
            }
          }
        }
    }
  });
}

void check_tokens(const torch::Tensor& u, const torch::Tensor& Kt, const torch::Tensor& gate,
                  const torch::Tensor& lam, int64_t P, int64_t s) {
  TORCH_CHECK(u.dim() == 3 && u.size(1) == P + s * s && Kt.dim() == 2 && Kt.size(0) == 9 && Kt.size(1) == u.size(2)
              && gate.dim() == 2 && gate.size(0) == u.size(0) && gate.size(1) == u.size(2)
              && lam.numel() == u.size(2), "token_light: shape mismatch");
}

}  // namespace

torch::Tensor token_light_forward(torch::Tensor u, torch::Tensor p, torch::Tensor Kt, torch::Tensor gate,
                                  torch::Tensor lam, int64_t P, int64_t s) {
  check(u, "u"); check(p, "p"); check(Kt, "K"); check(gate, "gate"); check(lam, "lambda");
  check_tokens(u, Kt, gate, lam, P, s);
  TORCH_CHECK(p.sizes() == u.sizes(), "token_light: p must be u's shape");
  auto out = torch::empty_like(u);
  const int64_t B = u.size(0), N = u.size(1), C = u.size(2);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "token_light_forward", [&] {
    token_light_forward_kernel<scalar_t>(u.data_ptr<scalar_t>(), p.data_ptr<scalar_t>(), Kt.data_ptr<scalar_t>(),
                                         gate.data_ptr<scalar_t>(), lam.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                         B, N, C, P, s);
  });
  return out;
}

std::vector<torch::Tensor> token_light_backward(torch::Tensor g, torch::Tensor u, torch::Tensor p, torch::Tensor Kt,
                                                torch::Tensor gate, torch::Tensor lam, int64_t P, int64_t s) {
  check(g, "g"); check(u, "u"); check(p, "p"); check(Kt, "K"); check(gate, "gate"); check(lam, "lambda");
  check_tokens(u, Kt, gate, lam, P, s);
  TORCH_CHECK(p.sizes() == u.sizes() && g.sizes() == u.sizes(), "token_light: g and p must be u's shape");
  const int64_t B = u.size(0), N = u.size(1), C = u.size(2);
  auto gu = torch::empty_like(u), gp = torch::empty_like(u);
  auto gK = torch::empty({B, 9, C}, u.options()), ggate = torch::empty({B, C}, u.options());
  auto glam = torch::empty({B, C}, u.options());
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "token_light_backward", [&] {
    token_light_backward_kernel<scalar_t>(g.data_ptr<scalar_t>(), u.data_ptr<scalar_t>(), p.data_ptr<scalar_t>(),
                                          Kt.data_ptr<scalar_t>(), gate.data_ptr<scalar_t>(), lam.data_ptr<scalar_t>(),
                                          gu.data_ptr<scalar_t>(), gp.data_ptr<scalar_t>(), gK.data_ptr<scalar_t>(),
                                          ggate.data_ptr<scalar_t>(), glam.data_ptr<scalar_t>(), B, N, C, P, s);
  });
  return {gu, gp, gK, ggate, glam};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("depthwise_forward", &depthwise_forward, "dw3x3(x; K), one kernel per (sample, channel)");
  m.def("depthwise_backward", &depthwise_backward, "gradients of x and K");
  m.def("weighted_sum", &weighted_sum, "sum_t w[:, :, t] * values[t] (and per-plane sums of it and its square)");
  m.def("weighted_sum_backward", &weighted_sum_backward, "gradients of every value, then of w (optionally through ReLU(BN))");
  m.def("light_forward", &light_forward, "y = dw3x3(o; K) + lambda*s, with per-plane sums of y and y^2");
  m.def("residual_affine", &residual_affine, "o + f(scale_c * y + shift_c), f = identity or ReLU");
  m.def("grad_stats", &grad_stats, "per-plane sums of g and g*y (g masked by ReLU)");
  m.def("light_backward", &light_backward, "gradients of o, s, K and lambda's per-plane partial sums");
  m.def("light_gate", &light_gate, "MRLA-light's gated kernels from the pooled descriptor (and what backward needs)");
  m.def("light_gate_backward", &light_gate_backward, "gradients of the pooled descriptor, Wq, Wk and Wv");
  m.def("bn_constants", &bn_constants, "BatchNorm's per-channel constants from per-plane sums (updates the running statistics)");
  m.def("bn_backward_constants", &bn_backward_constants, "d/dgamma, d/dbeta and the input gradient's coefficients");
  m.def("base_attention", &base_attention, "MRLA-base's per-channel attention weights over a stage's keys");
  m.def("token_light_forward", &token_light_forward, "DeiT MRLA-light's value path in token layout: gate*GELU(dw3x3) + lambda*p");
  m.def("token_light_backward", &token_light_backward, "gradients of u, p, K (per sample), the gate and lambda (per sample)");
  m.def("base_attention_backward", &base_attention_backward, "gradients of the pooled descriptor, Wq, Wk, earlier keys");
}
