// Shared helpers of the builtin filters, tests, methods and globals: argument access by position or
// keyword (as Python binds them) and Python's case mapping and str.replace.
#pragma once

#include <string>

#include "tokenizer/jinja/evaluator.h"

namespace bitexact::tok::jinja {

enum class CaseMap { kUpper, kLower, kTitle, kCapitalize };
std::string map_case(const std::string& s, CaseMap how);  // str.upper/lower/title/capitalize
std::string py_replace(const std::string& s, const std::string& old, const std::string& repl,
                       int64_t count);

// Argument i, or the keyword argument `name`, or `dflt`.
const Value& arg(ValueList& args, KwArgs& kwargs, size_t i, const char* name, const Value& dflt);
std::string string_arg(const Value& v, const char* what);
int64_t int_arg(const Value& v, const char* what);

// range, dict, namespace, raise_exception, strftime_now: the globals transformers' environment has.
void add_builtin_globals(Dict& globals);

}  // namespace bitexact::tok::jinja
