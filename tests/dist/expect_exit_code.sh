#!/bin/sh
# expect_exit_code.sh CODE COMMAND...: runs COMMAND and succeeds only if it exits with CODE
# (tests/CMakeLists.txt: mpirun must end the job with the code a rank gave abort_job).
expected=$1
shift
"$@"
rc=$?
echo "expect_exit_code: exit code $rc (expected $expected)"
[ "$rc" -eq "$expected" ]
