"""Conan 2 recipe for tenure, a header-only C++20 Raft with leader-lease reads.

The recipe lives in conan/ and packages the source tree one level up: `conan create conan/`
exports the top-level CMakeLists.txt, cmake/ and include/, installs them with CMake (tests,
examples and benchmarks off) and runs conan/test_package. The version is read from the
`project(tenure VERSION x.y.z ...)` line of CMakeLists.txt, the only place it is written.
"""

import os
import re

from conan import ConanFile
from conan.errors import ConanException
from conan.tools.build import check_min_cppstd
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy, load, rmdir

required_conan_version = ">=2.0"


class TenureConan(ConanFile):
    name = "tenure"
    description = "Header-only C++20 Raft with safe leader-lease reads"
    topics = ("raft", "consensus", "lease", "header-only")
    package_type = "header-library"
    # The settings drive the CMake install in the cache; package_id() clears them, so one package
    # serves every configuration.
    settings = "os", "arch", "compiler", "build_type"
    # Boost is used for its headers only (Asio, Intrusive).
    default_options = {"boost/*:header_only": True}
    no_copy_source = True

    def _source_root(self):
        # The source tree this recipe sits in (the recipe is in conan/).
        return os.path.join(self.recipe_folder, os.pardir)

    def set_version(self):
        if self.version:  # `--version` on the command line wins
            return
        cmakelists = load(self, os.path.join(self._source_root(), "CMakeLists.txt"))
        match = re.search(r"project\(\s*tenure\s+VERSION\s+(\d+\.\d+\.\d+)", cmakelists)
        if not match:
            raise ConanException("no `project(tenure VERSION x.y.z` in CMakeLists.txt")
        self.version = match.group(1)

    def export_sources(self):
        # What the top-level CMakeLists.txt needs to configure and install the library. Without
        # tests/, examples/ and benchmarks/ their add_subdirectory() calls are skipped anyway, and
        # generate() turns them off explicitly.
        root = self._source_root()
        copy(self, "CMakeLists.txt", root, self.export_sources_folder)
        copy(self, "cmake/*", root, self.export_sources_folder)
        copy(self, "include/*", root, self.export_sources_folder)

    def layout(self):
        cmake_layout(self)

    def requirements(self):
        # tenure's public headers include Boost's, so consumers must see them too.
        self.requires("boost/[>=1.74]", transitive_headers=True)

    def validate(self):
        # tenure needs C++20: a profile that sets compiler.cppstd must set 20 or newer.
        if self.settings.get_safe("compiler.cppstd"):
            check_min_cppstd(self, 20)

    def generate(self):
        tc = CMakeToolchain(self)
        tc.cache_variables["TENURE_BUILD_TESTS"] = "OFF"
        tc.cache_variables["TENURE_BUILD_EXAMPLES"] = "OFF"
        tc.cache_variables["TENURE_BUILD_BENCHMARKS"] = "OFF"
        tc.cache_variables["TENURE_INSTALL"] = "ON"
        tc.generate()
        CMakeDeps(self).generate()

    def build(self):
        # Nothing to compile: configuring generates <raft/version.hpp> and the install rules.
        cmake = CMake(self)
        cmake.configure()

    def package(self):
        cmake = CMake(self)
        cmake.install()
        # Consumers get the CMake config Conan generates (package_info below), not ours.
        rmdir(self, os.path.join(self.package_folder, "share"))

    def package_id(self):
        self.info.clear()

    def package_info(self):
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.set_property("cmake_file_name", "tenure")
        self.cpp_info.set_property("cmake_target_name", "tenure::tenure")
        self.cpp_info.requires = ["boost::headers"]
