# Makefile - the kvsep_fdw PostgreSQL extension (PGXS).  Builds the engine
# (engine/, no PostgreSQL dependency) first and links it in.
#
#   make                 build the extension (and the engine library)
#   make install         install into the PostgreSQL given by PG_CONFIG
#   sh scripts/test.sh   every test suite (see README.md)

MODULE_big = kvsep_fdw
OBJS = \
	src/admin.o \
	src/catalog.o \
	src/ddl.o \
	src/engine.o \
	src/fdw_handler.o \
	src/fdw_modify.o \
	src/fdw_plan.o \
	src/fdw_scan.o \
	src/guc.o \
	src/key_codec.o \
	src/out_of_line.o \
	src/raw_access.o \
	src/row_codec.o \
	src/shmem.o \
	src/table.o \
	src/worker.o \
	src/xact.o

EXTENSION = kvsep_fdw
DATA = kvsep_fdw--1.0.sql
PGFILEDESC = "kvsep_fdw - foreign tables in a key-value-separated LSM engine"

ENGINE_LIB = engine/build/release/libkvsep.a
PG_CPPFLAGS = -I$(srcdir)/engine/include -I$(srcdir)/src
PG_CFLAGS = -Wall -Wmissing-prototypes -Werror=implicit-function-declaration
SHLIB_LINK_INTERNAL = $(ENGINE_LIB)
SHLIB_LINK = -lsnappy -lzstd -lpthread -lm

# no LLVM bitcode: nothing here is worth JIT inlining, and it doubles the build
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(shlib): $(ENGINE_LIB)

# every object depends on every header it could include, so a changed
# header never leaves a stale object behind
$(OBJS): $(wildcard $(srcdir)/src/*.h) $(srcdir)/engine/include/kv.h

.PHONY: engine-lib
$(ENGINE_LIB): engine-lib
engine-lib:
	$(MAKE) -C engine lib
