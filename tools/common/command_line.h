// SPDX-License-Identifier: BSD-2-Clause
// What regcache-pingpong and regcache-limits share on the command line,
// built on CLI11: the house style of their --help (the usage line first,
// then the description, each option group under its heading with the
// options as "-p, --port N", then the footer), parsing argv[1..] into an
// outcome (run, help, version, or a usage error whose message names the
// option and what it accepts), the value checks they have in common, and
// the --version text. A usage error is exit status 2 in both tools.
#ifndef REGCACHE_TOOLS_COMMON_COMMAND_LINE_H_
#define REGCACHE_TOOLS_COMMON_COMMAND_LINE_H_

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace regcache_tools {

// Gives `app` the house style of --help: "usage: NAME SYNOPSIS", the
// description, the groups, the footer; option names and values in a
// column `column` characters wide. Options given twice take the last
// value (scripts put defaults first and let the user override them), and
// flags take no value ("--json=1" is an error). Also adds --version.
void SetUpCommandLine(CLI::App* app, const std::string& synopsis,
                      size_t column);

// Moves -h/--help and --version to the end of `group` (call after the
// other options are added, so that they are listed last).
void AddHelpAndVersion(CLI::App* app, const std::string& group);

// Parses `args` (argv[1..]) with `app`; *help and *version say whether
// they were asked for. Returns false on bad input, with *error saying which
// option is wrong and what it accepts (or which argument is unknown). Every
// option is checked even with --help or --version.
bool Parse(CLI::App* app, const std::vector<std::string>& args, bool* help,
           bool* version, std::string* error);

// A check for add_option(...)->check(): `problem` returns what is wrong
// with a value ("unknown mode 'fast' (...)"), or "" when it is good. CLI11
// puts the option's name in front of the message.
CLI::Validator Check(std::function<std::string(const std::string&)> problem);

// A check for add_option(...)->check(), with the value named by
// type_name(): accepts a value when `accepts`
// returns true, else fails with "'VALUE' is not WHAT" (CLI11 puts the
// option's name in front).
CLI::Validator Accepts(std::function<bool(const std::string&)> accepts,
                       const std::string& what);

// Accepts() for a parser `bool parse(const std::string&, T*)`: the values
// it can parse.
template <typename T, typename Parser>
CLI::Validator Parses(Parser parse, const std::string& what) {
  return Accepts(
      [parse](const std::string& text) {
        T ignored{};
        return parse(text, &ignored);
      },
      what);
}

// Decimal digits only (no sign, no "0x", no spaces), in [min, max].
bool ParseCount(const std::string& text, uint64_t min, uint64_t max,
                uint64_t* out);
// Accepts(ParseCount in [min, max]): "a number from MIN to MAX".
CLI::Validator Count(uint64_t min, uint64_t max);

// "regcache-limits 0.1.0 (regcache API 0.1)\n": the tool's version (the
// project's) and the library API's it was built with
// (REGCACHE_VERSION_MAJOR.MINOR of regcache/regcache.h).
std::string VersionText(const std::string& program);

}  // namespace regcache_tools

#endif  // REGCACHE_TOOLS_COMMON_COMMAND_LINE_H_
