// Compiled with the core's include root only, by ctest CoreCannotIncludeTheTransport, which
// expects the compile to fail: the core cannot see the transport's headers.
#include "dispatcher/dispatcher.hpp"
#include "transport/server.hpp"
