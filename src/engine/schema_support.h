// What of a JSON schema the grammar engine enforces. xgrammar compiles a schema with keywords it
// cannot express (uniqueItems, contains, not, allOf, if/then/else, dependentRequired, ...) by
// ignoring them: the output then breaks the schema while the request ends normally (review of
// 2026-12-07, checked with a JSON-schema validator). check_schema_supported refuses such a
// schema instead, as vLLM's xgrammar backend does, naming the keyword and where it is.
//
// Keywords are looked for only where a schema can stand: the root, properties' values, items,
// prefixItems, additionalProperties, anyOf / oneOf entries and $defs / definitions (a property
// named "not" is no keyword).
#pragma once
#include <string>

namespace nc {

// Throws nc::Error (InvalidArgument) naming the first unsupported keyword and its JSON pointer;
// text that is not JSON passes (the compiler names that error).
void check_schema_supported(const std::string& schema_text);

}  // namespace nc
