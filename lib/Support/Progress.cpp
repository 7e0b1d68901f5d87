//===- Progress.cpp - Progress lines for long-running passes --------------===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//

#include "qlr/Support/Progress.h"

#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>

using namespace qlr;

/// Auto prints nothing for a task this young (seconds) ...
static constexpr double kQuietSeconds = 2.0;
/// ... and then at most one line per this interval (seconds).
static constexpr double kIntervalSeconds = 1.0;

/// The mode setProgressMode chose, or -1 for none (then the environment
/// decides).
static std::atomic<int> explicitMode{-1};

std::optional<ProgressMode> qlr::parseProgressMode(llvm::StringRef text) {
  return llvm::StringSwitch<std::optional<ProgressMode>>(text)
      .Case("auto", ProgressMode::Auto)
      .Case("always", ProgressMode::Always)
      .Case("never", ProgressMode::Never)
      .Default(std::nullopt);
}

void qlr::setProgressMode(ProgressMode mode) {
  explicitMode.store(static_cast<int>(mode));
}

/// QLR_PROGRESS, read (and a bad value reported) once.
static ProgressMode environmentMode() {
  static const ProgressMode mode = [] {
    const char *value = std::getenv("QLR_PROGRESS");
    if (!value || !*value)
      return ProgressMode::Auto;
    if (std::optional<ProgressMode> parsed = parseProgressMode(value))
      return *parsed;
    llvm::errs() << "warning: QLR_PROGRESS='" << value
                 << "' is not auto, always or never; using auto\n";
    return ProgressMode::Auto;
  }();
  return mode;
}

ProgressMode qlr::getProgressMode() {
  int mode = explicitMode.load();
  return mode < 0 ? environmentMode() : static_cast<ProgressMode>(mode);
}

void qlr::registerProgressCLOptions() {
  // A function-local static: the option exists only in the tools that ask
  // for it (not, say, in mlir-opt with the QLR plugin loaded).
  static llvm::cl::opt<ProgressMode> option(
      "qlr-progress",
      llvm::cl::desc("Progress lines on stderr for the long-running qlr "
                     "passes (GPTQ, norm tweaking, basis selection, LoftQ); "
                     "the default is $QLR_PROGRESS, else auto"),
      llvm::cl::values(
          clEnumValN(ProgressMode::Auto, "auto",
                     "after 2 s, at most one line a second"),
          clEnumValN(ProgressMode::Always, "always", "a line for every step"),
          clEnumValN(ProgressMode::Never, "never", "no progress lines")),
      llvm::cl::init(ProgressMode::Auto),
      llvm::cl::cb<void, ProgressMode>(
          [](ProgressMode mode) { setProgressMode(mode); }));
}

std::string qlr::formatDuration(double seconds) {
  if (!(seconds > 0))
    seconds = 0;
  int64_t tenths = std::llround(seconds * 10);
  if (tenths < 600)
    return llvm::formatv("{0}.{1} s", tenths / 10, tenths % 10).str();
  int64_t whole = std::llround(seconds);
  std::string text;
  llvm::raw_string_ostream os(text);
  if (whole < 3600) {
    os << llvm::format("%lldm%02llds", (long long)(whole / 60),
                       (long long)(whole % 60));
  } else {
    int64_t minutes = std::llround(seconds / 60);
    os << llvm::format("%lldh%02lldm", (long long)(minutes / 60),
                       (long long)(minutes % 60));
  }
  return text;
}

/// An estimate for a person: whole seconds below a minute, else as
/// formatDuration.
static std::string formatEstimate(double seconds) {
  if (seconds < 59.5)
    return llvm::formatv("{0} s", std::llround(seconds)).str();
  return formatDuration(seconds);
}

static double secondsBetween(std::chrono::steady_clock::time_point from,
                             std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

Progress::Progress(llvm::StringRef task, llvm::StringRef what, int64_t total)
    : task(task.str()), what(what.str()), total(total), mode(getProgressMode()),
      start(Clock::now()), lastPrint(start) {}

Progress::~Progress() {
  if (printed && done < total)
    print({},
          llvm::formatv("stopped at {0}/{1} after {2}", done, total,
                        formatDuration(secondsBetween(start, Clock::now())))
              .str(),
          /*withCount=*/false);
}

void Progress::step(llvm::StringRef detail) {
  if (mode == ProgressMode::Never)
    return;
  std::lock_guard<std::mutex> lock(mutex);
  ++done;
  Clock::time_point now = Clock::now();
  double elapsed = secondsBetween(start, now);
  bool last = done >= total;
  if (mode == ProgressMode::Auto) {
    bool due = elapsed >= kQuietSeconds &&
               (!printed || secondsBetween(lastPrint, now) >= kIntervalSeconds);
    if (!due && !(last && printed))
      return;
  }
  std::string tail;
  if (last) {
    tail = "done in " + formatDuration(elapsed);
  } else {
    double left = elapsed / double(done) * double(total - done);
    tail = formatDuration(elapsed) + " elapsed, " +
           (left < 1 ? std::string("less than 1 s")
                     : "about " + formatEstimate(left)) +
           " left";
  }
  print(detail, tail, /*withCount=*/total > 1);
  lastPrint = now;
  printed = true;
}

void Progress::print(llvm::StringRef detail, llvm::StringRef tail,
                     bool withCount) {
  // One write per line, so that lines from other threads or other reports
  // do not interleave within it.
  std::string line = task + ": " + what;
  if (withCount)
    line += llvm::formatv(" {0}/{1}", done, total).str();
  if (!detail.empty())
    line += (" (" + detail + ")").str();
  line += (": " + tail + "\n").str();
  llvm::errs() << line;
  llvm::errs().flush();
}
