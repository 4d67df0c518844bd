// Writes the evaluation files of the synthetic run (tests/support/synthetic_evaluation.hpp) into
// the folder given, for the report screenshot and the XML checks that open them from disk.
//   write_sample_report OUT_DIR [GROUPS]
#include <exception>
#include <filesystem>
#include <iostream>
#include <string>

#include "aq/report/evaluation_files.hpp"
#include "support/synthetic_evaluation.hpp"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::cerr << "usage: write_sample_report OUT_DIR [GROUPS]\n";
    return 2;
  }
  try {
    const int groups = argc == 3 ? std::stoi(argv[2]) : 48;
    const std::filesystem::path dir = argv[1];
    std::filesystem::create_directories(dir);
    aq::io::write_evaluation_reports(dir, aq::test::synthetic_report_model(groups),
                                     aq::test::synthetic_evaluation(groups));
  } catch (const std::exception& e) {
    std::cerr << "write_sample_report: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
