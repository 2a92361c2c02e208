// Writes a fuzzer's seed corpus: one file per input, <directory>/<name>.bin. Shared by the
// corpus generators (make_*_corpus.cpp).
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <utility>

namespace tenure::fuzz {

class CorpusWriter {
 public:
  /// `program` names the generator in the error printed when a file cannot be written (the
  /// generator then exits with status 1).
  CorpusWriter(std::filesystem::path dir, const char* program)
      : dir_(std::move(dir)), program_(program) {}

  void write(const std::string& name, std::span<const std::byte> bytes) {
    std::ofstream out(dir_ / (name + ".bin"), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    if (!out) {
      std::fprintf(stderr, "%s: cannot write %s\n", program_, name.c_str());
      std::exit(1);
    }
    ++written_;
  }

  int written() const noexcept { return written_; }

 private:
  std::filesystem::path dir_;
  const char* program_;
  int written_ = 0;
};

}  // namespace tenure::fuzz
