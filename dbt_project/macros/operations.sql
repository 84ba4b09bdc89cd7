{#
  A run-operation that leaves a trace: `dbt run-operation record_operation
  --args '{label: nightly}'` appends one row to dbt_audit.
#}
{% macro record_operation(label) %}
  {% do run_query(create_audit_table()) %}
  {% do run_query(
      "insert into " ~ target.schema ~ ".dbt_audit values ('" ~ label ~ "', 'operation', '"
      ~ invocation_id ~ "', 'run-operation', false, '" ~ var('run_label', '') ~ "', current_timestamp)"
  ) %}
  {{ log("recorded operation " ~ label, info=True) }}
{% endmacro %}
