//===- Progress.h - Progress lines for long-running passes ----*- C++ -*-===//
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
//===----------------------------------------------------------------------===//
//
// Progress reports on stderr for the passes that can run for minutes (GPTQ,
// norm tweaking, basis selection, LoftQ): what is being done, how far it is,
// and an estimate of what remains, one line at a time, e.g.
//
//   qlr-quantize-linear: gptq, block 3/30 (layers.2): 12.3 s elapsed, about
//   1m50s left
//
// MLIR-free (LLVM Support only), so that every QLR library can use it.
//
//===----------------------------------------------------------------------===//

#ifndef QLR_SUPPORT_PROGRESS_H
#define QLR_SUPPORT_PROGRESS_H

#include "llvm/ADT/StringRef.h"

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

namespace qlr {

/// When Progress prints.
enum class ProgressMode {
  /// Nothing for a task that finishes within 2 s; after that, at most one
  /// line a second, and always the line of the last step.
  Auto,
  /// A line for every step.
  Always,
  /// Nothing.
  Never,
};

/// Parses `auto`, `always` or `never`.
std::optional<ProgressMode> parseProgressMode(llvm::StringRef text);

/// Sets the process-wide mode (overrides the environment).
void setProgressMode(ProgressMode mode);

/// The process-wide mode: the last setProgressMode, else the environment
/// variable QLR_PROGRESS (auto, always or never; any other value is reported
/// once on stderr and means auto), else Auto.
ProgressMode getProgressMode();

/// Registers the command-line option `--qlr-progress=auto|always|never`,
/// which sets the process-wide mode when given. Tools call this before they
/// parse their options; calling it again does nothing.
void registerProgressCLOptions();

/// `seconds` for a person: "0.4 s", "12.3 s", "3m12s", "1h05m".
std::string formatDuration(double seconds);

/// Reports the progress of one long task made of `total` steps on stderr
/// (llvm::errs()), following the process-wide mode read at construction:
///
///   <task>: <what> <done>/<total> (<detail>): 12.3 s elapsed, about 1m50s left
///   <task>: <what> <total>/<total> (<detail>): done in 4m10s
///
/// The count is left out when `total` is 1. The estimate is
/// elapsed / done * (total - done) ("less than 1 s left" below a second). A
/// task that ends early after printing something says so when it is destroyed
/// ("stopped at 3/30 after 40 s"). step() may be called from several threads at
/// once.
class Progress {
public:
  /// `task` names who reports (the pass argument), `what` the unit counted
  /// ("gptq, block", "weight").
  Progress(llvm::StringRef task, llvm::StringRef what, int64_t total);
  Progress(const Progress &) = delete;
  Progress &operator=(const Progress &) = delete;
  ~Progress();

  /// Records that one more step is done; `detail` names it (a block or
  /// weight name) in the line printed for it, if any.
  void step(llvm::StringRef detail = {});

private:
  using Clock = std::chrono::steady_clock;

  /// Writes one line "<task>: <what>[ <done>/<total>][ (<detail>)]: <tail>"
  /// (the count if `withCount`).
  void print(llvm::StringRef detail, llvm::StringRef tail, bool withCount);

  std::string task, what;
  int64_t total;
  ProgressMode mode;
  Clock::time_point start, lastPrint;
  int64_t done = 0;
  bool printed = false;
  std::mutex mutex;
};

} // namespace qlr

#endif // QLR_SUPPORT_PROGRESS_H
