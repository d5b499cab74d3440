#include "core/json_file.h"

#include <fstream>
#include <sstream>

#include "core/error.h"

namespace nc {

nlohmann::json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  NC_CHECK_AS(ErrorKind::NotFound, in.good(), "cannot read {}", path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    fail_as(ErrorKind::InvalidArgument, "{} is not valid JSON: {}", path.string(), e.what());
  }
}

}  // namespace nc
