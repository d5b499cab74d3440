// Reading a whole JSON file (config.json, tokenizer.json, model.safetensors.index.json): the one
// reader the loaders share, so every one of them reports a missing or malformed file the same
// way, naming the file.
//
// Errors: a file that cannot be opened is ErrorKind::NotFound ("cannot read <path>"); text
// that is not JSON is ErrorKind::InvalidArgument ("<path> is not valid JSON: <parser message>").
#pragma once
#include <filesystem>

#include <nlohmann/json.hpp>

namespace nc {

nlohmann::json read_json_file(const std::filesystem::path& path);

}  // namespace nc
