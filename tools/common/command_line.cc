// SPDX-License-Identifier: BSD-2-Clause
// The tools' shared command line (command_line.h): the help formatter,
// parsing with CLI11 and its messages, the common checks, --version.

#include "command_line.h"

#include <regex>

#include "regcache/regcache.h"

namespace regcache_tools {
namespace {

// CLI11's Formatter with the tools' layout (see SetUpCommandLine).
class HelpFormatter : public CLI::Formatter {
 public:
  explicit HelpFormatter(std::string synopsis)
      : synopsis_(std::move(synopsis)) {}

  std::string make_help(const CLI::App* app, std::string name,
                        CLI::AppFormatMode mode) const override {
    std::string out = "usage: " + name + " " + synopsis_ + "\n";
    out += app->get_description();
    if (!out.empty() && out.back() != '\n') out += '\n';
    for (const std::string& group : app->get_groups()) {
      const std::vector<const CLI::Option*> options =
          app->get_options([&group](const CLI::Option* o) {
            return o->get_group() == group && o->nonpositional();
          });
      if (group.empty() || options.empty()) continue;
      out += group + ":\n";
      for (const CLI::Option* option : options)
        out += make_option(option, false);
    }
    return out + make_footer(app);
  }

  // "-p, --port" rather than "-p,--port".
  std::string make_option_name(const CLI::Option* option,
                               bool positional) const override {
    std::string name = option->get_name(positional, !positional);
    for (size_t at = name.find(','); at != std::string::npos;
         at = name.find(',', at + 2))
      name.replace(at, 1, ", ");
    return name;
  }

  // The value's name only ("N", "LIST", set with type_name()); nothing for
  // flags (CLI11 would add "Excludes: ..." and the like).
  std::string make_option_opts(const CLI::Option* option) const override {
    return option->get_type_size() == 0 ? "" : " " + option->get_type_name();
  }

 private:
  std::string synopsis_;
};

// CLI11's message, said the way the rest of the tools' messages are.
std::string Message(const CLI::ParseError& e) {
  const std::string what = e.what();
  static const std::regex kMissing(R"(^(\S+): \d+ required (.*) missing$)");
  static const std::regex kFlagValue(
      R"(^-*(\S+) was given a disallowed flag override$)");
  static const std::regex kExtra(
      R"(^The following argument was not expected: (.*)$)");
  std::smatch m;
  if (std::regex_match(what, m, kMissing))
    return m[1].str() + " needs a value (" + m[2].str() + ")";
  if (std::regex_match(what, m, kFlagValue))
    return (m[1].length() == 1 ? "-" : "--") + m[1].str() + " takes no value";
  if (std::regex_match(what, m, kExtra)) {
    const std::string arg = m[1].str();
    return (arg.size() > 1 && arg[0] == '-' ? "unknown option '"
                                            : "unexpected argument '") +
           arg + "'";
  }
  return what;
}

}  // namespace

void SetUpCommandLine(CLI::App* app, const std::string& synopsis,
                      size_t column) {
  auto formatter = std::make_shared<HelpFormatter>(synopsis);
  formatter->column_width(column);
  app->formatter(formatter);
  app->option_defaults()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
      ->disable_flag_override();
  app->set_help_flag();  // added last, by AddHelpAndVersion()
}

void AddHelpAndVersion(CLI::App* app, const std::string& group) {
  app->add_flag("--version")
      ->description("print the program's and the library's version")
      ->group(group);
  app->set_help_flag("-h,--help", "this text")->group(group);
}

bool Parse(CLI::App* app, const std::vector<std::string>& args, bool* help,
           bool* version, std::string* error) {
  *help = *version = false;
  try {
    // CLI11 takes the arguments last first.
    app->parse(std::vector<std::string>(args.rbegin(), args.rend()));
  } catch (const CLI::CallForHelp&) {
    *help = true;
    return true;
  } catch (const CLI::ParseError& e) {
    *error = Message(e);
    return false;
  }
  *version = app->count("--version") > 0;
  return true;
}

CLI::Validator Check(std::function<std::string(const std::string&)> problem) {
  return CLI::Validator([problem = std::move(problem)](
                            std::string& value) { return problem(value); },
                        "");
}

CLI::Validator Accepts(std::function<bool(const std::string&)> accepts,
                       const std::string& what) {
  return Check([accepts = std::move(accepts), what](const std::string& value) {
    return accepts(value) ? std::string() : "'" + value + "' is not " + what;
  });
}

bool ParseCount(const std::string& text, uint64_t min, uint64_t max,
                uint64_t* out) {
  // 19 digits always fit in 64 bits.
  if (text.empty() || text.size() > 19) return false;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + uint64_t(c - '0');
  }
  if (value < min || value > max) return false;
  *out = value;
  return true;
}

CLI::Validator Count(uint64_t min, uint64_t max) {
  return Accepts(
      [min, max](const std::string& text) {
        uint64_t ignored;
        return ParseCount(text, min, max, &ignored);
      },
      "a number from " + std::to_string(min) + " to " + std::to_string(max));
}

std::string VersionText(const std::string& program) {
  return program + " " REGCACHE_TOOLS_VERSION " (regcache API " +
         std::to_string(REGCACHE_VERSION_MAJOR) + "." +
         std::to_string(REGCACHE_VERSION_MINOR) + ")\n";
}

}  // namespace regcache_tools
