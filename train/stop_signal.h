// Graceful stop on SIGINT / SIGTERM for the command-line programs. The first signal only sets a
// flag (and says so on stderr); the trainer finishes the step in progress, writes a final
// checkpoint unless told not to, and returns. A second signal ends the process at once with the
// signal's default action (the exit status a shell reports as 128 + signal number); whatever it
// leaves half-written is a temporary folder that the next run cleans up (train/run_dir.h).
// Tested by scripts/run_safety_checks.sh (SIGINT and SIGTERM during training, a second signal).
#pragma once
#include <atomic>

namespace engine::train {

// Installs the handlers (idempotent). `program` prefixes the one-line notice.
void install_stop_handlers(const char* program);

// 0 while no stop was requested, else the signal number of the first signal.
const std::atomic<int>& stop_request();

// "SIGINT", "SIGTERM", or "signal N".
const char* signal_name(int signo);

}  // namespace engine::train
