//===- qlr-run.cpp - Run a qlr model on the CPU -----------------*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
//   qlr-run model.mlirbc --perplexity text.txt [--ctx N] [--json]
//   qlr-run model.mlirbc --prompt "Once upon a time" [-n 64] [--temperature 0]
//
// The model is compiled with qlr-cpu-pipeline and MLIR's JIT, or is a
// library qlr-compile made (model.so), which runs through its C interface
// with the same results and no compile step. Perplexity
// uses non-overlapping windows of --ctx tokens, each starting with BOS when
// the tokenizer adds one; every other token of a window is scored from its
// full causal prefix; a partial last window is dropped.
//
//===----------------------------------------------------------------------===//

#include "qlr/Runtime/ModelRunner.h"
#include "qlr/Tokenizer/Tokenizer.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <cmath>
#include <random>

using namespace mlir;
namespace cl = llvm::cl;
using ::qlr::tokenizer::Tokenizer;

static cl::OptionCategory runCategory("qlr-run options");
static cl::opt<std::string> modelPath(cl::Positional, cl::Required,
                                      cl::desc("<model.mlirbc | model.so>"),
                                      cl::cat(runCategory));
static cl::opt<std::string> tokenizerPath(
    "tokenizer",
    cl::desc("Tokenizer file (llama2.c tokenizer.bin or tokenizer.json); "
             "overrides the one embedded by qlr-import"),
    cl::value_desc("file"), cl::cat(runCategory));
static cl::opt<std::string>
    perplexityPath("perplexity", cl::desc("Evaluate perplexity on this text"),
                   cl::value_desc("file"), cl::cat(runCategory));
static cl::opt<int64_t>
    ctxOption("ctx",
              cl::desc("Perplexity window in tokens (default: the model's "
                       "context, at most 512)"),
              cl::init(0), cl::cat(runCategory));
static cl::opt<int64_t>
    maxWindows("max-windows",
               cl::desc("Evaluate at most this many windows (0 = all)"),
               cl::init(0), cl::cat(runCategory));
static cl::opt<std::string>
    prompt("prompt", cl::desc("Generate a continuation"), cl::cat(runCategory));
static cl::list<int32_t> promptIds(
    "prompt-ids", cl::CommaSeparated,
    cl::desc("Generate from these token ids instead of --prompt text"),
    cl::value_desc("id,id,..."), cl::cat(runCategory));
static cl::opt<std::string> dumpLogits(
    "dump-logits",
    cl::desc("Write the prompt's prefill logits [tokens, vocab] as raw "
             "little-endian float32 to this file"),
    cl::value_desc("file"), cl::cat(runCategory));
static cl::opt<std::string>
    tokenizePath("tokenize",
                 cl::desc("Print the token ids of this text as JSON and exit"),
                 cl::value_desc("file"), cl::cat(runCategory));
static cl::opt<int64_t> numTokens("n", cl::desc("Tokens to generate"),
                                  cl::init(64), cl::cat(runCategory));
static cl::opt<double>
    temperature("temperature",
                cl::desc("Sampling temperature (0 = greedy, the default)"),
                cl::init(0.0), cl::cat(runCategory));
static cl::opt<uint64_t> seed("seed", cl::desc("Sampling seed"), cl::init(0),
                              cl::cat(runCategory));
// (`--threads` is taken by an option inside libLLVM.)
static cl::opt<unsigned> threads(
    "t",
    cl::desc("Threads to run on (default: one per core; 1 when this build "
             "has no OpenMP runtime)"),
    cl::value_desc("n"), cl::init(0), cl::cat(runCategory));
static cl::alias threadsAlias("num-threads", cl::desc("Alias for -t"),
                              cl::aliasopt(threads), cl::cat(runCategory));
static cl::opt<unsigned> optLevel(
    "O",
    cl::desc("Optimisation level of the JIT-compiled model, 0-3 (default 3; "
             "lower levels compile faster and run slower)"),
    cl::Prefix, cl::init(3), cl::cat(runCategory));
static cl::opt<bool> emulateGPU(
    "emulate-gpu",
    cl::desc("Run the GPU pipeline's kernels on the CPU: the loop nests "
             "qlr-gpu-pipeline maps to GPU blocks and threads, one iteration "
             "after another (slow; checks GPU code generation without a GPU)"),
    cl::init(false), cl::cat(runCategory));
static cl::opt<bool> json("json", cl::desc("Print one JSON object"),
                          cl::init(false), cl::cat(runCategory));
static cl::opt<bool> quiet("quiet", cl::desc("No progress on stderr"),
                           cl::init(false), cl::cat(runCategory));

static cl::extrahelp simdHelp(
    "\nThe JIT compiles for the host CPU. QLR_MAX_SIMD=portable|avx2|avx512 "
    "caps the instruction set (x86-64, x86-64-v3, x86-64-v4); --json reports "
    "the level as \"simd\" and the CPU compiled for as \"target_cpu\".\n");

static llvm::StringRef simdName(const mlir::qlr::ModelRunner &runner) {
  return ::qlr::numerics::simdLevelName(runner.simdLevel());
}

static int fail(const llvm::Twine &message) {
  llvm::WithColor::error(llvm::errs(), "qlr-run") << message << "\n";
  return 1;
}

static double seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since)
      .count();
}

/// -log softmax(row)[target], in double precision.
static double negativeLogLikelihood(llvm::ArrayRef<float> row, int32_t target) {
  double maxLogit = -INFINITY;
  for (float v : row)
    maxLogit = std::max(maxLogit, double(v));
  double sum = 0;
  for (float v : row)
    sum += std::exp(double(v) - maxLogit);
  return std::log(sum) + maxLogit - double(row[target]);
}

static int runPerplexity(mlir::qlr::ModelRunner &runner,
                         const Tokenizer &tokenizer) {
  auto buffer = llvm::MemoryBuffer::getFile(perplexityPath, /*IsText=*/true);
  if (!buffer)
    return fail(perplexityPath + ": " + buffer.getError().message());
  std::vector<int32_t> ids =
      tokenizer.encode((*buffer)->getBuffer(), /*addBos=*/false);
  const auto &config = runner.config();
  int64_t ctx =
      ctxOption ? int64_t(ctxOption) : std::min<int64_t>(config.maxSeqLen, 512);
  if (ctx < 2 || ctx > config.maxSeqLen)
    return fail(llvm::formatv("--ctx must be between 2 and the model's {0} "
                              "cache rows, got {1}",
                              config.maxSeqLen, ctx));
  bool bos = tokenizer.addsBosByDefault() && tokenizer.bosId() >= 0;
  int64_t stride = bos ? ctx - 1 : ctx;
  int64_t windows = int64_t(ids.size()) / stride;
  if (maxWindows > 0)
    windows = std::min<int64_t>(windows, maxWindows);
  if (windows == 0)
    return fail(llvm::formatv("{0}: {1} tokens do not fill one window of {2}",
                              perplexityPath, ids.size(), ctx));

  std::vector<float> logits(size_t(ctx) * config.vocabSize);
  std::vector<int32_t> window(ctx);
  double totalNll = 0;
  int64_t scored = 0;
  auto start = std::chrono::steady_clock::now();
  for (int64_t w = 0; w < windows; ++w) {
    size_t at = 0;
    if (bos)
      window[at++] = tokenizer.bosId();
    std::copy_n(ids.begin() + w * stride, stride, window.begin() + at);
    if (llvm::Error error = runner.forward(window, 0, logits))
      return fail(llvm::toString(std::move(error)));
    for (int64_t i = 1; i < ctx; ++i)
      totalNll += negativeLogLikelihood(
          llvm::ArrayRef<float>(logits).slice((i - 1) * config.vocabSize,
                                              config.vocabSize),
          window[i]);
    scored += ctx - 1;
    if (!quiet) {
      double elapsed = seconds(start);
      llvm::errs() << llvm::formatv(
          "\r[{0}/{1} windows] {2} tokens, ppl {3:F4}, {4:F1} tokens/s   ",
          w + 1, windows, scored, std::exp(totalNll / scored),
          (w + 1) * ctx / elapsed);
    }
  }
  if (!quiet)
    llvm::errs() << "\n";
  double nll = totalNll / scored, ppl = std::exp(nll);
  if (json) {
    llvm::json::Object out{{"tokens", scored},
                           {"nll", nll},
                           {"ppl", ppl},
                           {"windows", windows},
                           {"ctx", ctx},
                           {"text_tokens", int64_t(ids.size())},
                           {"seconds", seconds(start)},
                           {"compile_seconds", runner.compileSeconds()},
                           {"simd", simdName(runner)},
                           {"target_cpu", runner.targetCPU()},
                           {"device", runner.device()}};
    llvm::outs() << llvm::json::Value(std::move(out)) << "\n";
  } else {
    llvm::outs() << llvm::formatv("tokens evaluated: {0} ({1} windows of {2})\n"
                                  "mean NLL: {3:F6}\nperplexity: {4:F4}\n",
                                  scored, windows, ctx, nll, ppl);
  }
  return 0;
}

/// Generates from --prompt or --prompt-ids. Without a tokenizer (only
/// possible with --prompt-ids) the ids are printed instead of text.
static int runGeneration(mlir::qlr::ModelRunner &runner,
                         const Tokenizer *tokenizer) {
  const auto &config = runner.config();
  std::vector<int32_t> ids(promptIds.begin(), promptIds.end());
  if (ids.empty())
    ids = tokenizer->encode(prompt, tokenizer->addsBosByDefault());
  if (ids.empty())
    return fail("the prompt encodes to no tokens");
  int64_t limit =
      std::min<int64_t>(config.maxSeqLen, int64_t(ids.size()) + numTokens);
  std::vector<float> logits(ids.size() * config.vocabSize);
  std::mt19937_64 rng(seed);
  auto pick = [&](llvm::ArrayRef<float> row) -> int32_t {
    if (temperature <= 0)
      return int32_t(std::max_element(row.begin(), row.end()) - row.begin());
    std::vector<double> p(row.size());
    double maxLogit = *std::max_element(row.begin(), row.end());
    for (size_t i = 0; i < row.size(); ++i)
      p[i] = std::exp((row[i] - maxLogit) / temperature);
    std::discrete_distribution<int32_t> dist(p.begin(), p.end());
    return dist(rng);
  };

  auto start = std::chrono::steady_clock::now();
  if (llvm::Error error = runner.forward(ids, 0, logits))
    return fail(llvm::toString(std::move(error)));
  double prefillSeconds = seconds(start);
  if (!dumpLogits.empty()) {
    llvm::Error written = llvm::writeToOutput(
        dumpLogits, [&](llvm::raw_ostream &os) -> llvm::Error {
          os.write(reinterpret_cast<const char *>(logits.data()),
                   logits.size() * sizeof(float));
          return llvm::Error::success();
        });
    if (written)
      return fail(llvm::toString(std::move(written)));
  }
  int64_t promptTokens = ids.size();
  std::vector<int32_t> generated;
  int32_t next =
      pick(llvm::ArrayRef<float>(logits).take_back(config.vocabSize));
  auto show = [&](llvm::ArrayRef<int32_t> tokens, int32_t prev) {
    if (json)
      return;
    if (!tokenizer) {
      for (int32_t id : tokens)
        llvm::outs() << id << " ";
    } else if (tokens.size() == 1) {
      llvm::outs() << tokenizer->decodePiece(prev, tokens[0]);
    } else {
      llvm::outs() << tokenizer->decode(tokens);
    }
    llvm::outs().flush();
  };
  if (promptIds.empty() && !json)
    llvm::outs() << prompt;
  else
    show(ids, -1);
  int32_t eos = tokenizer ? tokenizer->eosId() : -1;
  auto decodeStart = std::chrono::steady_clock::now();
  std::vector<float> row(config.vocabSize);
  while (int64_t(ids.size()) < limit) {
    if (next == eos)
      break;
    generated.push_back(next);
    show(next, ids.back());
    ids.push_back(next);
    if (int64_t(ids.size()) >= limit)
      break;
    if (llvm::Error error = runner.forward(next, ids.size() - 1, row))
      return fail(llvm::toString(std::move(error)));
    next = pick(row);
  }
  double decodeSeconds = seconds(decodeStart);
  double prefillRate = promptTokens / prefillSeconds;
  double decodeRate =
      generated.size() > 1 ? (generated.size() - 1) / decodeSeconds : 0.0;
  if (json) {
    llvm::json::Array tokens;
    for (int32_t id : generated)
      tokens.push_back(id);
    llvm::json::Object out{
        {"prompt_tokens", promptTokens},
        {"tokens", std::move(tokens)},
        {"text", tokenizer ? llvm::json::fixUTF8(tokenizer->decode(generated))
                           : std::string()},
        {"prefill_tokens_per_s", prefillRate},
        {"decode_tokens_per_s", decodeRate},
        {"compile_seconds", runner.compileSeconds()},
        {"simd", simdName(runner)},
        {"target_cpu", runner.targetCPU()},
        {"device", runner.device()}};
    llvm::outs() << llvm::json::Value(std::move(out)) << "\n";
  } else {
    llvm::outs() << "\n";
  }
  if (!quiet)
    llvm::errs() << llvm::formatv(
        "{0} prompt tokens at {1:F1} tokens/s, {2} generated at {3:F1} "
        "tokens/s\n",
        promptTokens, prefillRate, generated.size(), decodeRate);
  return 0;
}

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions(runCategory);
  cl::AddExtraVersionPrinter([](llvm::raw_ostream &os) {
    os << "  " << ::qlr::numerics::describeSimd() << "\n";
  });
  cl::ParseCommandLineOptions(argc, argv,
                              "qlr-run: run a qlr model on the CPU (JIT), or a "
                              "library made by qlr-compile\n");
  bool wantPerplexity = !perplexityPath.empty();
  bool wantGeneration = prompt.getNumOccurrences() > 0 || !promptIds.empty();
  bool wantTokenize = !tokenizePath.empty();
  if (int(wantPerplexity) + int(wantGeneration) + int(wantTokenize) != 1)
    return fail("give exactly one of --perplexity FILE, --prompt TEXT "
                "(or --prompt-ids), --tokenize FILE");

  if (optLevel > 3)
    return fail(llvm::formatv("-O{0}: the optimisation level must be 0-3",
                              unsigned(optLevel)));
  mlir::qlr::RunnerOptions runnerOptions;
  runnerOptions.threads = threads;
  runnerOptions.optLevel = optLevel;
  runnerOptions.emulateGPU = emulateGPU;
  runnerOptions.compile = !wantTokenize; // tokenizing needs no code
  if (threads > 1 && !mlir::qlr::ModelRunner::supportsThreads())
    llvm::WithColor::warning(llvm::errs(), "qlr-run")
        << "this build has no OpenMP runtime: running on one thread\n";
  auto runner = mlir::qlr::ModelRunner::load(modelPath, runnerOptions);
  if (!runner)
    return fail(llvm::toString(runner.takeError()));
  if (!quiet && runnerOptions.compile)
    llvm::errs() << llvm::formatv("compiled {0} for {1} ({2}) in {3:F2} s\n",
                                  modelPath, (*runner)->targetCPU(),
                                  simdName(**runner),
                                  (*runner)->compileSeconds());

  std::optional<::qlr::tokenizer::TokenizerData> data = (*runner)->tokenizer();
  if (!tokenizerPath.empty()) {
    auto loaded = ::qlr::tokenizer::loadTokenizerFile(
        tokenizerPath, (*runner)->config().vocabSize);
    if (!loaded)
      return fail(llvm::toString(loaded.takeError()));
    data = std::move(*loaded);
  }
  if (!data) {
    if (wantGeneration && !promptIds.empty())
      return runGeneration(**runner, nullptr);
    return fail(modelPath + " has no tokenizer; pass --tokenizer FILE");
  }
  auto tokenizer = Tokenizer::create(std::move(*data));
  if (!tokenizer)
    return fail(llvm::toString(tokenizer.takeError()));
  if ((*tokenizer)->vocabSize() != (*runner)->config().vocabSize)
    return fail(llvm::formatv("the tokenizer has {0} tokens but the model's "
                              "vocabulary has {1}",
                              (*tokenizer)->vocabSize(),
                              (*runner)->config().vocabSize));

  if (wantTokenize) {
    auto buffer = llvm::MemoryBuffer::getFile(tokenizePath, /*IsText=*/true);
    if (!buffer)
      return fail(tokenizePath + ": " + buffer.getError().message());
    llvm::json::Array ids;
    for (int32_t id : (*tokenizer)->encode((*buffer)->getBuffer(), false))
      ids.push_back(id);
    llvm::outs() << llvm::json::Value(std::move(ids)) << "\n";
    return 0;
  }
  if (wantPerplexity)
    return runPerplexity(**runner, **tokenizer);
  return runGeneration(**runner, tokenizer->get());
}
