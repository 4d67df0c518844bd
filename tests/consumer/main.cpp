#include <aq/autoquant.hpp>

int main() { return aq::version_major == 0 ? 0 : 1; }
