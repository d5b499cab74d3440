// What of a JSON schema the grammar engine enforces. xgrammar compiles a schema with keywords it
// cannot express (uniqueItems, contains, not, allOf, if/then/else, dependencies, ...) by
// ignoring them: the output then breaks the schema while the request ends normally (reviews of
// 2026-12-07, checked with a JSON-schema validator). check_schema_supported refuses such a
// schema instead, as vLLM's xgrammar backend does, naming the problem and where it is. Refused
// too, for the same reason: minLength/maxLength beside a pattern (xgrammar drops the bounds;
// beside a format it drops them too, accepted since pydantic's URL types write it), a pattern with
// a quote or a backslash (xgrammar matches it against the JSON-escaped text), references outside
// the schema, and schemas no value can meet (an empty anyOf, oneOf or type list; a const or enum
// value of another type; a required property objects cannot have, as they take only their
// 'properties' unless additionalProperties allows more). oneOf is compiled as anyOf: branches that
// overlap are not held to "exactly one" (docs/server.md).
//
// Keywords are looked for only where a schema can stand: the root, properties' values, items,
// prefixItems, additionalProperties, anyOf / oneOf entries, $defs / definitions and whatever a
// local $ref names (a property named "not" is no keyword).
#pragma once
#include <string>

namespace nc {

// Throws nc::Error (InvalidArgument) naming the first unsupported keyword and its JSON pointer;
// text that is not JSON passes (the compiler names that error).
void check_schema_supported(const std::string& schema_text);
// The same for every JSON schema in a structural tag (xgrammar's {"type": "json_schema",
// "json_schema": S} formats: forced tool calls' parameters).
void check_structural_tag_schemas(const std::string& tag_text);

}  // namespace nc
