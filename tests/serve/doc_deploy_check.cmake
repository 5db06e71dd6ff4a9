# Copies the reference deployment file out of docs/serve.md (between its deploy-reference
# markers) and runs `gpufrac serve FILE --check` on it, as a user who copies it would: the page
# calls it a file that passes, and this keeps it one.
#   cmake -DGPUFRAC=build/bin/gpufrac -DDOC=docs/serve.md -DOUT=build/tests/deploy-doc.yaml -P ...
file(READ "${DOC}" doc)
set(begin_marker "<!-- deploy-reference:begin -->\n```yaml\n")
set(end_marker "```\n<!-- deploy-reference:end -->")
string(FIND "${doc}" "${begin_marker}" begin)
string(FIND "${doc}" "${end_marker}" end)
if(begin EQUAL -1 OR end EQUAL -1 OR end LESS begin)
  message(FATAL_ERROR "${DOC}: no ```yaml block between the deploy-reference markers")
endif()
string(LENGTH "${begin_marker}" marker_length)
math(EXPR from "${begin} + ${marker_length}")
math(EXPR length "${end} - ${from}")
string(SUBSTRING "${doc}" ${from} ${length} yaml)
file(WRITE "${OUT}" "${yaml}")
execute_process(COMMAND "${GPUFRAC}" serve "${OUT}" --check
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "gpufrac serve ${OUT} --check exited ${rc}: ${err}${out}")
endif()
message(STATUS "${out}")
