// SIGINT / SIGTERM handlers (stop_signal.h). Only async-signal-safe calls in the handler: an
// atomic exchange, write(2), signal(2) and raise(3).
#include "train/stop_signal.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace engine::train {
namespace {

std::atomic<int> g_stop{0};
static_assert(std::atomic<int>::is_always_lock_free, "the flag is set from a signal handler");
char g_notice[256];
size_t g_notice_len = 0;

void on_signal(int signo) {
  if (g_stop.exchange(signo) != 0) {  // second signal: stop now
    ::signal(signo, SIG_DFL);
    ::raise(signo);
    return;
  }
  ssize_t ignored = ::write(STDERR_FILENO, g_notice, g_notice_len);
  (void)ignored;
}

}  // namespace

const char* signal_name(int signo) {
  switch (signo) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    default:
      return "a signal";
  }
}

void install_stop_handlers(const char* program) {
  const char* text = ": stop requested; finishing the current step (a second signal stops at once)\n";
  g_notice_len = 0;
  for (const char* s : {program, text}) {
    const size_t n = std::min(std::strlen(s), sizeof g_notice - 1 - g_notice_len);
    std::memcpy(g_notice + g_notice_len, s, n);
    g_notice_len += n;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // file reads elsewhere need not expect EINTR
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

const std::atomic<int>& stop_request() { return g_stop; }

}  // namespace engine::train
