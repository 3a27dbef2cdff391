// enum_name(), enum_count<E> and enum_names<E>: an enum's names and count, read from the
// enum itself at compile time. An enumerator's name is its label in metrics, JSON and logs,
// so each enum is written once and no list of names can drift from it.
//
// The enumerators must run from 0 without gaps (what the counters indexed by them need
// anyway); enum_count stops at the first value that names none. Pure, any thread.
#pragma once

#include <array>
#include <cstddef>
#include <string_view>
#include <type_traits>
#include <utility>

namespace shardcast {
namespace detail {

// GCC writes "... [with auto V = ns::Enum::name; ...]", Clang "... [V = ns::Enum::name]",
// and both write a value that names no enumerator as a cast, "(ns::Enum)7".
template <auto V>
constexpr std::string_view enumerator_name() {
    std::string_view text = __PRETTY_FUNCTION__;
    text.remove_prefix(text.find("V = ") + 4);
    text = text.substr(0, text.find_first_of(";]"));
    if (text.starts_with('(')) {
        return {};
    }
    return text.substr(text.rfind(':') + 1);
}

template <class E, std::size_t I = 0>
constexpr std::size_t count_enumerators() {
    if constexpr (I == 256 || enumerator_name<static_cast<E>(I)>().empty()) {
        return I;
    } else {
        return count_enumerators<E, I + 1>();
    }
}

template <class E, std::size_t... I>
constexpr auto names_of(std::index_sequence<I...>) {
    return std::array<std::string_view, sizeof...(I)>{enumerator_name<static_cast<E>(I)>()...};
}

}  // namespace detail

template <class E>
requires std::is_enum_v<E>
inline constexpr std::size_t enum_count = detail::count_enumerators<E>();

template <class E>
requires std::is_enum_v<E>
inline constexpr auto enum_names = detail::names_of<E>(std::make_index_sequence<enum_count<E>>{});

template <class E>
requires std::is_enum_v<E>
constexpr std::size_t enum_index(E value) { return static_cast<std::size_t>(value); }

template <class E>
requires std::is_enum_v<E>
constexpr std::string_view enum_name(E value) {
    static_assert(enum_count<E> > 0, "enumerators must start at 0");
    const std::size_t index = enum_index(value);
    return index < enum_count<E> ? enum_names<E>[index] : std::string_view("unknown");
}

}  // namespace shardcast
