// Every element of the v1 .proto files is documented: each service, RPC,
// message, field, oneof, enum and enum value has a leading comment. Comments
// are not in the generated descriptors, so the build writes a
// FileDescriptorSet with source info (protoc --include_source_info) and this
// test loads it. It also checks that the set holds exactly the .proto files
// in proto/linearize/v1 and that they match what the binary was compiled
// from.

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "linearize/v1/evaluation_service.pb.h"
#include "linearize/v1/inference_service.pb.h"
#include "linearize/v1/job_service.pb.h"
#include "linearize/v1/worker_service.pb.h"

#ifndef LINEARIZE_PROTO_DESCRIPTOR_SET
#error "LINEARIZE_PROTO_DESCRIPTOR_SET must name the generated FileDescriptorSet"
#endif

namespace {

namespace fs = std::filesystem;
using google::protobuf::Descriptor;
using google::protobuf::DescriptorPool;
using google::protobuf::EnumDescriptor;
using google::protobuf::FileDescriptor;
using google::protobuf::FileDescriptorProto;
using google::protobuf::FileDescriptorSet;
using google::protobuf::SourceLocation;

constexpr char kPackage[] = "linearize.v1";

class ProtoSourceComments : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::ifstream in(LINEARIZE_PROTO_DESCRIPTOR_SET, std::ios::binary);
    ASSERT_TRUE(in) << "cannot open " << LINEARIZE_PROTO_DESCRIPTOR_SET;
    std::stringstream bytes;
    bytes << in.rdbuf();
    set_ = new FileDescriptorSet;
    ASSERT_TRUE(set_->ParseFromString(bytes.str()))
        << LINEARIZE_PROTO_DESCRIPTOR_SET << " is not a FileDescriptorSet";
    // --include_imports lists dependencies before their users.
    pool_ = new DescriptorPool;
    for (const FileDescriptorProto& file : set_->file()) {
      ASSERT_NE(pool_->BuildFile(file), nullptr) << "cannot build " << file.name();
    }
  }
  static void TearDownTestSuite() {
    delete pool_;
    delete set_;
  }

  static std::vector<const FileDescriptor*> ApiFiles() {
    std::vector<const FileDescriptor*> files;
    for (const FileDescriptorProto& proto : set_->file()) {
      if (proto.package() == kPackage) files.push_back(pool_->FindFileByName(proto.name()));
    }
    return files;
  }

  static FileDescriptorSet* set_;
  static DescriptorPool* pool_;
};

FileDescriptorSet* ProtoSourceComments::set_ = nullptr;
DescriptorPool* ProtoSourceComments::pool_ = nullptr;

bool HasText(const std::string& s) {
  return std::any_of(s.begin(), s.end(), [](unsigned char c) { return std::isalnum(c); });
}

// Collects "<kind> <full name>" of every element without a leading comment.
class Auditor {
 public:
  template <typename D>
  void Check(const char* kind, const D& d) {
    ++checked_;
    SourceLocation loc;
    if (!d.GetSourceLocation(&loc)) {
      missing_.push_back(std::string(kind) + " " + d.full_name() + " (no source info)");
    } else if (!HasText(loc.leading_comments)) {
      missing_.push_back(std::string(kind) + " " + d.full_name() + " (line " +
                         std::to_string(loc.start_line + 1) + ")");
    }
  }

  void CheckEnum(const EnumDescriptor& e) {
    Check("enum", e);
    for (int i = 0; i < e.value_count(); ++i) Check("enum value", *e.value(i));
  }

  void CheckMessage(const Descriptor& m) {
    Check("message", m);
    for (int i = 0; i < m.field_count(); ++i) Check("field", *m.field(i));
    for (int i = 0; i < m.real_oneof_decl_count(); ++i) Check("oneof", *m.oneof_decl(i));
    for (int i = 0; i < m.nested_type_count(); ++i) {
      if (!m.nested_type(i)->options().map_entry()) CheckMessage(*m.nested_type(i));
    }
    for (int i = 0; i < m.enum_type_count(); ++i) CheckEnum(*m.enum_type(i));
  }

  void CheckFile(const FileDescriptor& f) {
    for (int i = 0; i < f.message_type_count(); ++i) CheckMessage(*f.message_type(i));
    for (int i = 0; i < f.enum_type_count(); ++i) CheckEnum(*f.enum_type(i));
    for (int i = 0; i < f.service_count(); ++i) {
      Check("service", *f.service(i));
      for (int j = 0; j < f.service(i)->method_count(); ++j) {
        Check("rpc", *f.service(i)->method(j));
      }
    }
  }

  int checked() const { return checked_; }
  const std::vector<std::string>& missing() const { return missing_; }

 private:
  int checked_ = 0;
  std::vector<std::string> missing_;
};

TEST_F(ProtoSourceComments, DescriptorSetHoldsExactlyTheProtoFilesOfTheTree) {
  std::set<std::string> in_tree;
  const fs::path dir = fs::path(LINEARIZE_SOURCE_DIR) / "proto" / "linearize" / "v1";
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".proto") {
      in_tree.insert("linearize/v1/" + entry.path().filename().string());
    }
  }
  std::set<std::string> in_set;
  for (const FileDescriptorProto& file : set_->file()) {
    if (file.package() == kPackage) in_set.insert(file.name());
  }
  EXPECT_EQ(in_tree, in_set) << "a .proto file in " << dir
                             << " is not compiled: add it to proto/CMakeLists.txt";
  EXPECT_EQ(in_set.size(), 7u);
}

TEST_F(ProtoSourceComments, DescriptorSetMatchesTheCompiledMessages) {
  // Link in every generated file, then compare without source info.
  ASSERT_NE(linearize::v1::Job::descriptor(), nullptr);
  ASSERT_NE(linearize::v1::Task::descriptor(), nullptr);
  ASSERT_NE(linearize::v1::EvaluateRequest::descriptor(), nullptr);
  ASSERT_NE(linearize::v1::Session::descriptor(), nullptr);
  for (const FileDescriptor* file : ApiFiles()) {
    SCOPED_TRACE(file->name());
    const FileDescriptor* compiled = DescriptorPool::generated_pool()->FindFileByName(file->name());
    ASSERT_NE(compiled, nullptr) << file->name() << " is not linked into the binary";
    FileDescriptorProto a, b;
    file->CopyTo(&a);
    file->CopyJsonNameTo(&a);  // the set carries json_name, CopyTo drops it
    compiled->CopyTo(&b);
    compiled->CopyJsonNameTo(&b);
    google::protobuf::util::MessageDifferencer differ;
    std::string diff;
    differ.ReportDifferencesToString(&diff);
    EXPECT_TRUE(differ.Compare(a, b))
        << file->name() << " differs between the descriptor set and the compiled code:\n"
        << diff;
  }
}

TEST_F(ProtoSourceComments, SourceInfoIsPresent) {
  for (const FileDescriptor* file : ApiFiles()) {
    FileDescriptorProto proto;
    file->CopySourceCodeInfoTo(&proto);
    EXPECT_GT(proto.source_code_info().location_size(), 0)
        << file->name() << " was compiled without --include_source_info";
  }
}

TEST_F(ProtoSourceComments, EveryElementHasALeadingComment) {
  Auditor auditor;
  for (const FileDescriptor* file : ApiFiles()) auditor.CheckFile(*file);
  // Sanity: the audit really walked the API (hundreds of elements).
  EXPECT_GT(auditor.checked(), 500);
  std::string report;
  for (const std::string& m : auditor.missing()) report += "  " + m + "\n";
  EXPECT_TRUE(auditor.missing().empty())
      << auditor.missing().size() << " element(s) without a leading comment:\n"
      << report;
}

// The auditor itself must notice a missing comment.
TEST(ProtoSourceCommentsAuditor, FlagsAnUndocumentedField) {
  FileDescriptorProto file;
  file.set_name("t.proto");
  file.set_package("t");
  file.set_syntax("proto3");
  auto* msg = file.add_message_type();
  msg->set_name("M");
  auto* field = msg->add_field();
  field->set_name("x");
  field->set_number(1);
  field->set_type(google::protobuf::FieldDescriptorProto::TYPE_INT32);
  field->set_label(google::protobuf::FieldDescriptorProto::LABEL_OPTIONAL);
  // Source info: message documented (path [4, 0]), field not (path [4, 0, 2, 0]).
  auto* loc = file.mutable_source_code_info()->add_location();
  loc->add_path(4);
  loc->add_path(0);
  loc->add_span(0);
  loc->add_span(0);
  loc->add_span(1);
  loc->set_leading_comments(" A message.\n");
  loc = file.mutable_source_code_info()->add_location();
  for (int p : {4, 0, 2, 0}) loc->add_path(p);
  loc->add_span(2);
  loc->add_span(0);
  loc->add_span(1);
  DescriptorPool pool;
  const FileDescriptor* built = pool.BuildFile(file);
  ASSERT_NE(built, nullptr);
  Auditor auditor;
  auditor.CheckFile(*built);
  EXPECT_EQ(auditor.checked(), 2);
  ASSERT_EQ(auditor.missing().size(), 1u);
  EXPECT_EQ(auditor.missing()[0], "field t.M.x (line 3)");
}

}  // namespace
