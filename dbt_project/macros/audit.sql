{% macro create_audit_table() %}
  create schema if not exists {{ target.schema }};
  create table if not exists {{ target.schema }}.dbt_audit (
      node varchar,
      resource_type varchar,
      invocation_id varchar,
      command varchar,
      full_refresh boolean,
      run_label varchar,
      built_at timestamp
  )
{% endmacro %}

{% macro record_build() %}
  insert into {{ target.schema }}.dbt_audit values (
      '{{ this.identifier }}',
      '{{ model.resource_type }}',
      '{{ invocation_id }}',
      '{{ flags.WHICH }}',
      {{ 'true' if flags.FULL_REFRESH else 'false' }},
      '{{ var("run_label", "") }}',
      current_timestamp
  )
{% endmacro %}
