// aq umbrella header: everything a user of the library needs.
// checkpoint + captions + formats + budget -> io -> model -> calib -> score -> search -> report
#pragma once

#include "aq/core/config.hpp"
#include "aq/core/error.hpp"
#include "aq/core/bf16.hpp"
#include "aq/core/atomic_file.hpp"
