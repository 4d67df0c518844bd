// Default sanitizer options of every fuzz target, so that a finding replays the same way under
// scripts/fuzz.sh and by hand: UBSan stops at the first report (except the suppressed third-party
// ones in ubsan.supp) and prints its stack.
extern "C" const char* __ubsan_default_options() {
  return "halt_on_error=1:print_stacktrace=1:suppressions=" AQ_FUZZ_UBSAN_SUPPRESSIONS;
}
