// The end of a forward pass: bringing logit rows back to the host. A row sampled greedily or
// with temperature (top-k / top-p / min-p included) needs only its token and a few logprobs, so
// those are found on the model's device (ops::top_tokens, ops::sample_tokens,
// ops::top_logprobs) and the vocabulary-sized rows are copied only for rows that need them
// (penalties, banned tokens, prompt logprobs).
#include <algorithm>

#include "model/model_internal.h"

namespace bitexact::model {

void Model::finish_outputs(Workspace& ws, const ForwardBatch& b, int rows, const Outputs& out) {
  const int64_t V = w_.config.vocab_size;
  out.logits.resize(size_t(rows) * size_t(V));
  if (out.logprobs) out.logprobs->resize(out.logits.size());
  if (rows == 0) return ops::synchronize(ctx_);
  const DType act = ctx_.device == Device::kCpu ? DType::kF32 : DType::kBF16;
  const Tensor logits = ws.logits.as(act, {rows, V});
  Tensor lp = ws.logprobs.as(DType::kF32, {rows, V});
  auto full = [&](int r) { return b.row_top_n.empty() || b.row_top_n[size_t(r)] < 0; };
  bool any_full = false;
  for (int r = 0; r < rows; ++r) any_full = any_full || full(r);
  // Vocabulary-sized log-softmax rows only for rows that go to the host whole.
  if (out.logprobs && any_full) ops::log_softmax(ctx_, logits, lp);

  // Copies rows [r0, r1) of the logits (and log-softmax) to the host.
  auto copy_rows = [&](int r0, int r1) {
    auto slice = [&](const Tensor& t, void* base, DType dt) {
      Tensor s = t;
      s.data = static_cast<char*>(base) + size_t(r0) * size_t(V) * dtype_size(dt);
      s.shape[0] = r1 - r0;
      return s;
    };
    Tensor host = Tensor::view(out.logits.data() + size_t(r0) * size_t(V), DType::kF32, {r1 - r0, V});
    ops::copy(ctx_, slice(logits, logits.data, act), host);
    if (out.logprobs) {
      Tensor lp_host = Tensor::view(out.logprobs->data() + size_t(r0) * size_t(V), DType::kF32, {r1 - r0, V});
      ops::copy(ctx_, slice(lp, lp.data, DType::kF32), lp_host);
    }
  };
  for (int r0 = 0; r0 < rows;) {  // runs of consecutive full rows, one copy each
    if (!full(r0)) {
      ++r0;
      continue;
    }
    int r1 = r0 + 1;
    while (r1 < rows && full(r1)) ++r1;
    copy_rows(r0, r1);
    r0 = r1;
  }
  if (b.row_top_n.empty() || std::all_of(b.row_top_n.begin(), b.row_top_n.end(), [](int n) { return n < 0; }))
    return ops::synchronize(ctx_);

  const int n = std::max(0, *std::max_element(b.row_top_n.begin(), b.row_top_n.end()));
  bool any_sampled = false;  // a device row drawn with temperature (ops::sample_tokens)
  for (int r = 0; r < rows && !b.row_sample.empty(); ++r)
    any_sampled = any_sampled || (!full(r) && b.row_sample[size_t(r)].temperature > 0.0f);
  std::vector<int32_t> token(static_cast<size_t>(rows)), ids(static_cast<size_t>(rows) * size_t(n));
  std::vector<float> token_lp(token.size()), vals(ids.size());
  Tensor h_token = Tensor::view(token.data(), DType::kI32, {rows, 1});
  if (any_sampled) {
    // Token and its logprob from sample_tokens: greedy rows (temperature 0) get top_tokens'
    // top-1 and log_softmax's value, the same as the greedy path below; full rows are greedy
    // here too, their results unused.
    std::vector<ops::SampleRow> prm(static_cast<size_t>(rows));
    // The op ranks max_top_k candidates per row (ops::top_tokens, whose cost grows with n) for
    // plain top-k rows: 0 for plain temperature. Rows with top-p / min-p, or a top_k above
    // ops::kMaxSampleTopK, are cut by the op's radix select, which needs no candidates (and is
    // cheaper than ranking 20 of them): the same token either way.
    int max_top_k = 0;
    for (int r = 0; r < rows; ++r)
      if (!full(r)) {
        const ops::SampleRow& p = prm[size_t(r)] = b.row_sample[size_t(r)];
        if (p.top_k <= ops::kMaxSampleTopK && !p.top_p_units && !p.min_p_units)
          max_top_k = std::max(max_top_k, p.top_k);
      }
    Tensor h_prm = Tensor::view(prm.data(), DType::kI32, {rows, ops::kSampleRowWords});
    Tensor d_prm = h_prm;
    if (ctx_.device != Device::kCpu) {
      d_prm = ws.sample_params.as(DType::kI32, {rows, ops::kSampleRowWords});
      ops::copy(ctx_, h_prm, d_prm);
    }
    Tensor s_ids = ws.greedy_ids.as(DType::kI32, {rows}), s_lps = ws.greedy_vals.as(DType::kF32, {rows});
    ops::sample_tokens(ctx_, logits, d_prm, s_ids, s_lps, max_top_k);
    Tensor h_ids1 = Tensor::view(token.data(), DType::kI32, {rows});
    Tensor h_lps1 = Tensor::view(token_lp.data(), DType::kF32, {rows});
    ops::copy(ctx_, s_ids, h_ids1);
    ops::copy(ctx_, s_lps, h_lps1);
  }
  // Greedy token = top-1 of the logits. Its logprob = top-1 of the log-softmax: log_softmax is
  // x - lse with one lse per row, monotone in x, so the largest logprob is the argmax's.
  // top_logprobs = top_tokens(log_softmax(logits)) without writing the f32 rows.
  const int tn = std::max(1, n);
  Tensor t_ids = ws.top_ids.as(DType::kI32, {rows, tn}), t_vals = ws.top_vals.as(DType::kF32, {rows, tn});
  if (!any_sampled) {
    Tensor g_ids = ws.greedy_ids.as(DType::kI32, {rows, 1}), g_vals = ws.greedy_vals.as(DType::kF32, {rows, 1});
    ops::top_tokens(ctx_, logits, g_ids, g_vals);
    ops::copy(ctx_, g_ids, h_token);
  }
  if (!any_sampled || n > 0) {
    ids.resize(size_t(rows) * size_t(tn));
    vals.resize(ids.size());
    ops::top_logprobs(ctx_, logits, t_ids, t_vals);
    Tensor h_ids = Tensor::view(ids.data(), DType::kI32, {rows, tn});
    Tensor h_vals = Tensor::view(vals.data(), DType::kF32, {rows, tn});
    ops::copy(ctx_, t_ids, h_ids);
    ops::copy(ctx_, t_vals, h_vals);
  }
  ops::synchronize(ctx_);
  out.tops->assign(size_t(rows), RowTop{});
  for (int r = 0; r < rows; ++r) {
    if (full(r)) continue;
    RowTop& t = (*out.tops)[size_t(r)];
    t.token = token[size_t(r)];
    t.logprob = any_sampled ? token_lp[size_t(r)] : vals[size_t(r) * size_t(tn)];
    for (int j = 0; j < b.row_top_n[size_t(r)]; ++j)
      t.top.emplace_back(ids[size_t(r) * size_t(tn) + size_t(j)], vals[size_t(r) * size_t(tn) + size_t(j)]);
  }
}

}  // namespace bitexact::model
