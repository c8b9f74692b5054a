#include "trainer/eval.h"

#include <cmath>
#include <cstdio>

namespace mrl {

torch::Tensor EmbedSplit(MrlModel& model, const Split& split, int64_t begin, int64_t end) {
  torch::NoGradGuard no_grad;
  model->eval();
  const int64_t chunk = 1024;
  std::vector<int64_t> idx(static_cast<size_t>(end - begin));
  for (int64_t i = begin; i < end; ++i) idx[static_cast<size_t>(i - begin)] = i;
  std::vector<torch::Tensor> parts;
  for (int64_t s = 0; s < end - begin; s += chunk) {
    const int64_t n = std::min(chunk, end - begin - s);
    Batch b = MakeBatch(split, idx.data() + s, n, /*augment=*/false, 0, 0, 0);
    parts.push_back(model->Embed(model->PrepareInput(b.x)));
  }
  model->train();
  return parts.empty() ? torch::empty({0, model->config().dim}) : torch::cat(parts);
}

std::vector<int64_t> NearestLabels(const torch::Tensor& db, const torch::Tensor& queries, int64_t m,
                                   const std::vector<int64_t>& db_labels, int k) {
  torch::NoGradGuard no_grad;
  namespace F = torch::nn::functional;
  const auto norm = F::NormalizeFuncOptions().dim(1).eps(1e-12);
  torch::Tensor d = F::normalize(db.narrow(1, 0, m), norm).t().contiguous();  // [m, N]
  torch::Tensor q = F::normalize(queries.narrow(1, 0, m), norm);
  const int64_t Q = q.size(0);
  std::vector<int64_t> out(static_cast<size_t>(Q * k));
  const int64_t chunk = 1024;
  for (int64_t s = 0; s < Q; s += chunk) {
    const int64_t n = std::min(chunk, Q - s);
    torch::Tensor top = std::get<1>(torch::mm(q.narrow(0, s, n), d).topk(k, 1)).contiguous();
    const int64_t* ti = top.data_ptr<int64_t>();
    for (int64_t i = 0; i < n * k; ++i) {
      out[static_cast<size_t>(s * k + i)] = db_labels[static_cast<size_t>(ti[i])];
    }
  }
  return out;
}

namespace {

double Accuracy(const torch::Tensor& logits, const std::vector<int64_t>& labels) {
  torch::Tensor pred = logits.argmax(1).contiguous();
  const int64_t* p = pred.data_ptr<int64_t>();
  double correct = 0;
  for (size_t i = 0; i < labels.size(); ++i) correct += p[i] == labels[i] ? 1 : 0;
  return labels.empty() ? 0 : correct / static_cast<double>(labels.size());
}

void Progress(const char* what, int64_t dim) {
  std::printf("[eval] %s dim %lld\n", what, static_cast<long long>(dim));
  std::fflush(stdout);
}

}  // namespace

double LinearTop1(MrlModel& model, const torch::Tensor& z, int64_t m,
                  const std::vector<int64_t>& labels) {
  torch::NoGradGuard no_grad;
  return Accuracy(model->LogitsAt(z, m), labels);
}

std::vector<DimEval> EvaluatePerDim(MrlModel& model, const torch::Tensor& db,
                                    const std::vector<int64_t>& db_labels, const torch::Tensor& q,
                                    const std::vector<int64_t>& q_labels,
                                    const std::vector<int64_t>& dims) {
  std::vector<DimEval> out;
  for (int64_t m : dims) {
    Progress("per-dim", m);
    DimEval e;
    e.dim = m;
    if (model->HasClassifierAt(m)) e.linear_top1 = LinearTop1(model, q, m, q_labels);
    const RetrievalScore r = ScoreRetrieval(NearestLabels(db, q, m, db_labels, 10), 10, q_labels);
    e.knn_top1 = r.top1;
    e.map_at_10 = r.map_at_10;
    out.push_back(e);
  }
  return out;
}

double ProbeTop1(const torch::Tensor& fit, const std::vector<int64_t>& fit_labels,
                 const torch::Tensor& heldout, const std::vector<int64_t>& heldout_labels,
                 const torch::Tensor& test, const std::vector<int64_t>& test_labels,
                 int64_t num_classes, uint64_t seed, int64_t* best_epoch) {
  // One scale for every coordinate (their RMS std on `fit`), not one per coordinate: scaling
  // each coordinate to unit variance would blow the low-variance directions (noise, for an SVD
  // tail) up to the size of the signal, and a 1000-way probe over them overfits (43% at 2048-d
  // where the same embedding's own head gets 79%). A uniform scale keeps the geometry: the
  // probe at full dim sees a rotation of the embedding.
  const int64_t m = fit.size(1);
  const double rms = std::sqrt(fit.var(0).mean().item<double>());
  const double scale = rms > 1e-12 ? 1.0 / rms : 1.0;
  const torch::Tensor x = fit * scale, xh = heldout * scale, xt = test * scale;
  const torch::Tensor y = torch::tensor(fit_labels, torch::kInt64);
  const bool early_stop = heldout.size(0) > 0;
  torch::manual_seed(seed);
  torch::AutoGradMode grad(true);
  torch::nn::Linear probe(m, num_classes);
  torch::optim::SGD opt(probe->parameters(),
                        torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(1e-4));
  const int64_t epochs = 15, bs = 512, n = x.size(0);
  const int64_t steps = epochs * ((n + bs - 1) / bs);
  int64_t step = 0;
  double best = -1;
  torch::Tensor best_w, best_b;
  for (int64_t ep = 0; ep < epochs; ++ep) {
    const torch::Tensor perm = torch::randperm(n, torch::kInt64);
    for (int64_t s = 0; s < n; s += bs, ++step) {
      const torch::Tensor idx = perm.narrow(0, s, std::min(bs, n - s));
      const double lr = 0.05 * (1 + std::cos(3.14159265358979 * step / steps));
      for (auto& g : opt.param_groups()) g.options().set_lr(lr);
      opt.zero_grad();
      torch::nn::functional::cross_entropy(probe->forward(x.index_select(0, idx)),
                                           y.index_select(0, idx))
          .backward();
      opt.step();
    }
    if (!early_stop) continue;
    torch::NoGradGuard off;
    const double acc = Accuracy(probe->forward(xh), heldout_labels);
    if (acc > best) {  // the earliest epoch of the best held-out accuracy
      best = acc;
      best_w = probe->weight.detach().clone();
      best_b = probe->bias.detach().clone();
      if (best_epoch != nullptr) *best_epoch = ep + 1;
    }
  }
  torch::NoGradGuard off;
  if (early_stop) {
    probe->weight.copy_(best_w);
    probe->bias.copy_(best_b);
  } else if (best_epoch != nullptr) {
    *best_epoch = epochs;
  }
  return Accuracy(probe->forward(xt), test_labels);
}

std::vector<DimEval> EvaluateSvd(const torch::Tensor& fit, const std::vector<int64_t>& fit_labels,
                                 const torch::Tensor& heldout,
                                 const std::vector<int64_t>& heldout_labels,
                                 const torch::Tensor& db, const std::vector<int64_t>& db_labels,
                                 const torch::Tensor& q, const std::vector<int64_t>& q_labels,
                                 const std::vector<int64_t>& dims, int64_t num_classes,
                                 uint64_t seed) {
  torch::NoGradGuard no_grad;
  const torch::Tensor mean = fit.to(torch::kFloat64).mean(0);
  const torch::Tensor centered = fit.to(torch::kFloat64) - mean;
  const torch::Tensor cov = torch::mm(centered.t(), centered) / static_cast<double>(fit.size(0));
  // eigh returns ascending eigenvalues: the principal directions are the last columns.
  torch::Tensor basis = std::get<1>(torch::linalg::eigh(cov, "L")).flip({1}).to(torch::kFloat32);
  const torch::Tensor meanf = mean.to(torch::kFloat32);
  std::vector<DimEval> out;
  for (int64_t m : dims) {
    Progress("svd", m);
    const torch::Tensor v = basis.narrow(1, 0, m);
    const torch::Tensor p_fit = torch::mm(fit - meanf, v);
    const torch::Tensor p_db = torch::mm(db - meanf, v);
    const torch::Tensor p_q = torch::mm(q - meanf, v);
    const torch::Tensor p_ho = heldout.size(0) > 0 ? torch::mm(heldout - meanf, v) : heldout;
    DimEval e;
    e.dim = m;
    const RetrievalScore r = ScoreRetrieval(NearestLabels(p_db, p_q, m, db_labels, 10), 10, q_labels);
    e.knn_top1 = r.top1;
    e.map_at_10 = r.map_at_10;
    e.linear_top1 = ProbeTop1(p_fit, fit_labels, p_ho, heldout_labels, p_q, q_labels, num_classes,
                              seed, nullptr);
    out.push_back(e);
  }
  return out;
}

AdaptiveReport EvaluateAdaptive(MrlModel& model, const torch::Tensor& heldout,
                                const std::vector<int64_t>& heldout_labels, const torch::Tensor& q,
                                const std::vector<int64_t>& q_labels) {
  torch::NoGradGuard no_grad;
  AdaptiveReport rep;
  rep.dims = model->loss_dims();
  rep.heldout = heldout.size(0);
  auto inputs = [&](const torch::Tensor& z, const std::vector<int64_t>& labels) {
    CascadeInputs in;
    in.dims = rep.dims;
    const torch::Tensor y = torch::tensor(labels, torch::kInt64);
    for (int64_t m : rep.dims) {
      const torch::Tensor probs = torch::softmax(model->LogitsAt(z, m), 1);
      auto [conf, pred] = probs.max(1);
      conf = conf.contiguous();
      const torch::Tensor ok = pred.eq(y).to(torch::kUInt8).contiguous();
      in.confidence.emplace_back(conf.data_ptr<float>(), conf.data_ptr<float>() + conf.numel());
      in.correct.emplace_back(ok.data_ptr<uint8_t>(), ok.data_ptr<uint8_t>() + ok.numel());
    }
    return in;
  };
  const CascadeInputs h = inputs(heldout, heldout_labels);
  const CascadeInputs t = inputs(q, q_labels);
  double full = 0;
  for (uint8_t c : t.correct.back()) full += c;
  rep.full_dim_accuracy = full / static_cast<double>(std::max<size_t>(t.correct.back().size(), 1));
  for (double slack : {0.0, 0.002, 0.005, 0.01, 0.02, 0.05}) {
    const std::vector<float> th = LearnCascadeThresholds(h, slack);
    if (slack == 0.0) rep.thresholds = th;
    const CascadeResult r = RunCascade(t, th);
    rep.curve.push_back({slack, r.accuracy, r.expected_dim});
  }
  return rep;
}

}  // namespace mrl
