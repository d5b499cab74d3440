// engine/schema_support.h: the schemas refused because xgrammar would let their output break
// them (each case here gave invalid output with finish_reason "stop" in the review of
// 2026-12-07), named by problem and JSON pointer; and common schemas that must still pass.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "engine/schema_support.h"

namespace nc::test_schema_support {
namespace {

// The refusal's message, or "(accepted)".
std::string refusal(const std::string& schema) {
  try {
    check_schema_supported(schema);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument) << e.what();
    return e.what();
  }
  return "(accepted)";
}

void expect_refused(const std::string& schema, const std::string& says) {
  const std::string why = refusal(schema);
  EXPECT_NE(why.find(says), std::string::npos) << schema << "\n -> " << why;
}

TEST(SchemaSupport, LengthBoundsBesideAPatternOrFormatAreRefused) {
  expect_refused(R"({"type":"object","properties":{"code":{"type":"string","pattern":"^[a-z]+$",)"
                 R"("maxLength":3}},"required":["code"]})",
                 "'minLength'/'maxLength' beside 'pattern' at '/properties/code'");
  // Beside a format (pydantic's AnyUrl: format uri, minLength 1) accepted, bounds unenforced.
  EXPECT_EQ(refusal(R"({"type":"string","format":"uri","minLength":1,"maxLength":2083})"),
            "(accepted)");
  EXPECT_EQ(refusal(R"({"type":"string","maxLength":3})"), "(accepted)");
  EXPECT_EQ(refusal(R"({"type":"string","pattern":"^\\d+$"})"), "(accepted)");
}

TEST(SchemaSupport, PatternsWithAQuoteOrALiteralBackslashAreRefused) {
  expect_refused(R"({"type":"string","pattern":"^a\"b$"})", "a 'pattern' with a quote");
  expect_refused(R"({"type":"string","pattern":"^a\\\\b$"})", "or a backslash");
}

TEST(SchemaSupport, ReferencesAreFollowedAndMustStayInTheSchema) {
  expect_refused(R"({"components":{"X":{"type":"array","uniqueItems":true}},)"
                 R"("$ref":"#/components/X"})",
                 "'uniqueItems' at '/components/X'");
  expect_refused(R"({"$ref":"https://example.com/schema.json"})",
                 "not a reference into this schema");
  expect_refused(R"({"$ref":"#/$defs/missing"})", "names nothing in this schema");
  // A recursive schema refers to itself: checked once, accepted.
  EXPECT_EQ(refusal(R"({"$defs":{"node":{"type":"object","properties":{"next":{"anyOf":[)"
                    R"({"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["next"]}},)"
                    R"("$ref":"#/$defs/node"})"),
            "(accepted)");
}

TEST(SchemaSupport, SchemasNoValueCanMeetAreRefused) {
  expect_refused(R"({"type":"object","properties":{"a":{"anyOf":[]}},"required":["a"]})",
                 "an empty 'anyOf' at '/properties/a'");
  expect_refused(R"({"type":[]})", "an empty 'type' list");
  expect_refused(
      R"({"type":"object","properties":{"a":{"type":"integer"}},"required":["a","zzz"]})",
      "required property \"zzz\"");
  expect_refused(R"({"type":"integer","enum":["a"]})", "'enum' value \"a\"");
  expect_refused(R"({"type":"string","const":5})", "'const' 5");
  expect_refused(R"({"type":"object","properties":{"a":{"type":"integer"}},"required":["a"],)"
                 R"("dependencies":{"a":["b"]}})",
                 "'dependencies'");
  // Other properties allowed: a required name outside 'properties' can be written.
  EXPECT_EQ(refusal(R"({"type":"object","required":["x"],"additionalProperties":true})"),
            "(accepted)");
  EXPECT_EQ(refusal(R"({"type":["string","null"],"enum":["a",null]})"), "(accepted)");
  EXPECT_EQ(refusal(R"({"type":"integer","enum":[1,2.0]})"), "(accepted)");
}

// What pydantic writes for a model with an optional field, an enum and a nested model.
TEST(SchemaSupport, APydanticSchemaIsAccepted) {
  EXPECT_EQ(
      refusal(R"({"$defs":{"Color":{"enum":["red","green"],"title":"Color","type":"string"},)"
              R"("Point":{"properties":{"x":{"title":"X","type":"integer"}},"required":["x"],)"
              R"("title":"Point","type":"object"}},"properties":{"name":{"title":"Name",)"
              R"("type":"string","maxLength":20},"color":{"$ref":"#/$defs/Color"},)"
              R"("at":{"anyOf":[{"$ref":"#/$defs/Point"},{"type":"null"}],"default":null}},)"
              R"("required":["name","color"],"title":"Shape","type":"object"})"),
      "(accepted)");
}

TEST(SchemaSupport, StructuralTagsHaveTheirSchemasChecked) {
  const std::string tag =
      R"({"type":"structural_tag","format":{"type":"triggered_tags","triggers":["<tool_call>"],)"
      R"("tags":[{"begin":"<tool_call>","content":{"type":"json_schema","json_schema":)"
      R"({"type":"object","properties":{"xs":{"type":"array","uniqueItems":true}}}},)"
      R"("end":"</tool_call>"}]}})";
  try {
    check_structural_tag_schemas(tag);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'uniqueItems' at '/properties/xs'"), std::string::npos)
        << e.what();
  }
  EXPECT_NO_THROW(check_structural_tag_schemas(
      R"({"type":"structural_tag","format":{"type":"json_schema","json_schema":{"type":"object"}}})"));
}

}  // namespace
}  // namespace nc::test_schema_support
