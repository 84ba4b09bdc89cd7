{#
  Demo switch: list model names in the environment variable
  DBT_DEMO_BROKEN_MODELS (comma-separated) and those models fail at run time
  with a DuckDB error, as a model with a bad query would. Unset it to "fix" them.
#}
{% macro fail_if_requested() %}
  {%- set broken = env_var('DBT_DEMO_BROKEN_MODELS', '').split(',') | map('trim') | list -%}
  {%- if this.identifier in broken -%}
    select error('demo failure: {{ this.identifier }} is listed in DBT_DEMO_BROKEN_MODELS')
  {%- endif -%}
{% endmacro %}
