// libFuzzer target: load_config, the YAML file and the -s overrides the server starts from.
//
// Input: the file's text; after a NUL byte, if there is one, NUL-separated key=value
// overrides. The text is written to a file of this process's own (in /dev/shm, else the
// temporary directory), which load_config reads. Paths in it resolve from the working directory:
// scripts/fuzz runs from the repository root, where the seeds' tests/fuzz/keys/ paths point.
//
// A ConfigError is the expected answer to a bad file. Any other exception escapes and
// libFuzzer reports it (as a crash), as it does sanitizer reports. A config that loads must
// also describe itself for the startup log.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.hpp"
#include "main/config.hpp"

namespace {

// In /dev/shm when there is one: millions of truncating writes to a file on ext4 spend more
// time in writeback than the loader spends parsing.
const std::filesystem::path& config_path() {
    static const std::filesystem::path path = [] {
        std::error_code ec;
        const std::filesystem::path dir = std::filesystem::is_directory("/dev/shm", ec)
                                              ? std::filesystem::path("/dev/shm")
                                              : std::filesystem::temp_directory_path();
        return dir / ("shardcast-config-fuzz-" + std::to_string(::getpid()) + ".yaml");
    }();
    return path;
}

}  // namespace

// Registered after the path exists, so the file goes before the path is destroyed.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
    config_path();
    std::atexit([] { std::remove(config_path().c_str()); });
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const std::size_t nul = input.find('\0');
    std::vector<std::string> overrides;
    if (nul != std::string_view::npos) {
        std::string_view rest = input.substr(nul + 1);
        for (;;) {
            const std::size_t next = rest.find('\0');
            overrides.emplace_back(rest.substr(0, next));
            if (next == std::string_view::npos) break;
            rest = rest.substr(next + 1);
        }
    }
    {
        std::ofstream out(config_path(), std::ios::binary | std::ios::trunc);
        out.write(input.data(), static_cast<std::streamsize>(input.substr(0, nul).size()));
    }
    try {
        const shardcast::Config config = shardcast::load_config(config_path(), overrides);
        shardcast::fuzz::check(!shardcast::describe(config).empty(), "an empty description");
    } catch (const shardcast::ConfigError& e) {
        shardcast::fuzz::check(e.what()[0] != '\0', "a ConfigError without a message");
    }
    return 0;
}
