// The one place simdjson enters aq: every JSON reader (config.json, safetensors headers, shard
// indexes, tokenizer.json, captions, manifests) includes this header instead of <simdjson.h>,
// so that translation units compiled by nvcc see the same settings as those compiled by g++.
#pragma once

// nvcc's front end cannot parse the x86 SIMD kernels of the Icelake, Haswell and Westmere
// implementations in simdjson.h (vector conversion errors), so CUDA translation units leave them
// out. The portable kernel that remains is simdjson's builtin implementation (its `ondemand` API)
// in a default x86-64 g++ build too, so .cpp and .cu translation units agree on it. aq uses only
// the DOM API, whose parsing kernels libsimdjson picks at run time, so a -march=native g++ build
// (a different builtin) still shares one parser with the CUDA translation units.
#if defined(__CUDACC__)
#ifndef SIMDJSON_IMPLEMENTATION_ICELAKE
#define SIMDJSON_IMPLEMENTATION_ICELAKE 0
#endif
#ifndef SIMDJSON_IMPLEMENTATION_HASWELL
#define SIMDJSON_IMPLEMENTATION_HASWELL 0
#endif
#ifndef SIMDJSON_IMPLEMENTATION_WESTMERE
#define SIMDJSON_IMPLEMENTATION_WESTMERE 0
#endif
#endif

#include <simdjson.h>
