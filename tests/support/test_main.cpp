// The GoogleTest main every test binary links. It prepares the process for tests that open
// thousands of sockets, then runs all tests on the main thread.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

namespace {

// Thousands of test clients plus the server under test, all in one process, need far more
// descriptors than the usual soft limit of 1024; the hard limit is as far as we may go.
void raise_descriptor_limit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) {
        return;
    }
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
        std::fprintf(stderr, "test_main: could not raise RLIMIT_NOFILE: %s\n",
                     std::strerror(errno));
    }
}

}  // namespace

int main(int argc, char** argv) {
    raise_descriptor_limit();
    // A write to a socket the server has just closed must fail with EPIPE, not kill the test.
    std::signal(SIGPIPE, SIG_IGN);
    testing::InitGoogleTest(&argc, argv);
    return RUN_ALL_TESTS();
}
