"""C++/OpenMP source of the compiled CPU backend, kept as a string so it ships inside the package."""

SOURCE = r"""
// Compiled CPU path for the perturbation step and init (built by xrobust/kernels/cpu.py).
// Memory-traffic plan (docs/KERNELS.md): per-example units are processed one example per
// thread, so phase 2 re-reads the example's g and delta from cache rather than DRAM; per-token
// units are one pass per row (the row stays in L1 between its reduction and its update).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <vector>

namespace {

constexpr float kNormEps = 1e-8f;
// Minimum elements per parallel task: below this, waking a second thread costs more than it saves.
constexpr int64_t kGrainElems = 32768;

inline int64_t grain(int64_t elems_per_item) { return std::max<int64_t>(1, kGrainElems / std::max<int64_t>(1, elems_per_item)); }

struct Sums {
  double gg = 0, dg = 0, dd = 0, gmax = 0;
  float nonfinite = 0;  // sum of g*0: NaN as soon as one g is inf or NaN, 0 otherwise
};

// Reduction over one row of d values.
template <typename G>
inline void row_sums(const float* __restrict d, const G* __restrict g, int64_t n, bool linf, Sums& s) {
  float gg = 0.f, dg = 0.f, dd = 0.f, gmax = 0.f, nf = 0.f;
  if (linf) {
#pragma omp simd reduction(max : gmax) reduction(+ : nf)
    for (int64_t i = 0; i < n; ++i) {
      float gi = static_cast<float>(g[i]);
      gmax = std::max(gmax, std::fabs(gi));
      nf += gi * 0.f;
    }
  } else {
#pragma omp simd reduction(+ : gg, dg, dd, nf)
    for (int64_t i = 0; i < n; ++i) {
      float gi = static_cast<float>(g[i]);
      float di = d[i];
      gg += gi * gi;
      dg += di * gi;
      dd += di * di;
      nf += gi * 0.f;
    }
  }
  s.gg += gg; s.dg += dg; s.dd += dd; s.nonfinite += nf;
  s.gmax = std::max(s.gmax, (double)gmax);
}

// Coefficient c (delta + c*g) and the projection of the updated unit, derived from its sums.
struct Coef { float c, scale; };

inline Coef coef(const Sums& s, bool linf, float step, float max_norm) {
  Coef k;
  if (linf) {
    k.c = step / std::max((float)s.gmax, kNormEps);
    k.scale = 1.f;
    return k;
  }
  double gn = std::sqrt(s.gg);
  k.c = step / std::max((float)gn, kNormEps);
  k.scale = 1.f;
  if (max_norm > 0) {
    // ||delta + c g||^2 = dd + 2c dg + c^2 gg: the updated norm without a third pass.
    double c = k.c;
    double n2 = std::max(0.0, s.dd + 2.0 * c * s.dg + c * c * s.gg);
    double n = std::sqrt(n2);
    if (n > max_norm) k.scale = (float)(max_norm / n);
  }
  return k;
}

template <typename G>
inline void row_update(float* __restrict o, const float* __restrict d, const G* __restrict g, int64_t n,
                       Coef k, bool linf, float max_norm) {
  if (linf) {
    const float lo = max_norm > 0 ? -max_norm : -INFINITY, hi = max_norm > 0 ? max_norm : INFINITY;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o[i] = std::min(std::max(d[i] + k.c * static_cast<float>(g[i]), lo), hi);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o[i] = (d[i] + k.c * static_cast<float>(g[i])) * k.scale;
  }
}

inline void row_zero(float* o, int64_t n) { std::fill(o, o + n, 0.f); }

template <typename G>
void step_impl(const float* d, const G* g, const bool* m, float* o, bool* finite, int64_t B, int64_t L,
               int64_t D, float step, float max_norm, bool linf, bool token) {
  if (token) {
    std::vector<uint8_t> row_ok(B * L, 1);
    at::parallel_for(0, B * L, grain(D), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* orow = o + r * D;
        if (!m[r]) { row_zero(orow, D); continue; }
        Sums s;
        row_sums(d + r * D, g + r * D, D, linf, s);
        row_ok[r] = s.nonfinite == 0.f;
        row_update(orow, d + r * D, g + r * D, D, coef(s, linf, step, max_norm), linf, max_norm);
      }
    });
    for (int64_t b = 0; b < B; ++b)
      finite[b] = std::all_of(row_ok.begin() + b * L, row_ok.begin() + (b + 1) * L, [](uint8_t v) { return v; });
    return;
  }
  auto example = [&](int64_t b, int64_t l0, int64_t l1, Sums& s) {
    for (int64_t l = l0; l < l1; ++l) {
      int64_t r = b * L + l;
      if (m[r]) row_sums(d + r * D, g + r * D, D, linf, s);
    }
  };
  auto update = [&](int64_t b, int64_t l0, int64_t l1, Coef k) {
    for (int64_t l = l0; l < l1; ++l) {
      int64_t r = b * L + l;
      if (m[r]) row_update(o + r * D, d + r * D, g + r * D, D, k, linf, max_norm);
      else row_zero(o + r * D, D);
    }
  };
  if (B >= at::get_num_threads()) {
    // One example per task: its g and delta are still in cache when phase 2 re-reads them.
    at::parallel_for(0, B, grain(L * D), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        Sums s;
        example(b, 0, L, s);
        finite[b] = s.nonfinite == 0.f;
        update(b, 0, L, coef(s, linf, step, max_norm));
      }
    });
    return;
  }
  // Fewer examples than threads: split rows, reduce partials per example, then update rows.
  std::vector<Sums> part(B * L);
  at::parallel_for(0, B * L, grain(D), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) example(r / L, r % L, r % L + 1, part[r]);
  });
  std::vector<Coef> k(B);
  for (int64_t b = 0; b < B; ++b) {
    Sums s;
    for (int64_t l = 0; l < L; ++l) {
      const Sums& p = part[b * L + l];
      s.gg += p.gg; s.dg += p.dg; s.dd += p.dd; s.nonfinite += p.nonfinite; s.gmax = std::max(s.gmax, p.gmax);
    }
    finite[b] = s.nonfinite == 0.f;
    k[b] = coef(s, linf, step, max_norm);
  }
  at::parallel_for(0, B * L, grain(D), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) update(r / L, r % L, r % L + 1, k[r / L]);
  });
}

}  // namespace

std::vector<torch::Tensor> step(torch::Tensor delta, torch::Tensor grad, torch::Tensor mask, double step_size,
                                double max_norm, bool linf, bool token) {
  const int64_t B = delta.size(0), L = delta.size(1), D = delta.size(2);
  auto out = torch::empty_like(delta);
  auto finite = torch::empty({B}, mask.options());
  const float* d = delta.data_ptr<float>();
  const bool* m = mask.data_ptr<bool>();
  float* o = out.data_ptr<float>();
  bool* f = finite.data_ptr<bool>();
  float s = (float)step_size, mn = (float)max_norm;
  switch (grad.scalar_type()) {
    case at::kFloat: step_impl(d, grad.data_ptr<float>(), m, o, f, B, L, D, s, mn, linf, token); break;
    case at::kBFloat16: step_impl(d, grad.data_ptr<at::BFloat16>(), m, o, f, B, L, D, s, mn, linf, token); break;
    case at::kHalf: step_impl(d, grad.data_ptr<at::Half>(), m, o, f, B, L, D, s, mn, linf, token); break;
    default: TORCH_CHECK(false, "grad dtype not supported");
  }
  return {out, finite};
}

// In place on u ~ U(0,1): u <- (2u - 1) * scale[b] at real rows, 0 at padding (one read+write pass).
void init_scale(torch::Tensor u, torch::Tensor mask, torch::Tensor scale) {
  const int64_t B = u.size(0), L = u.size(1), D = u.size(2);
  float* p = u.data_ptr<float>();
  const bool* m = mask.data_ptr<bool>();
  const float* sc = scale.data_ptr<float>();
  at::parallel_for(0, B * L, grain(D), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* row = p + r * D;
      if (!m[r]) { row_zero(row, D); continue; }
      const float s = sc[r / L];
#pragma omp simd
      for (int64_t i = 0; i < D; ++i) row[i] = (2.f * row[i] - 1.f) * s;
    }
  });
}
"""
