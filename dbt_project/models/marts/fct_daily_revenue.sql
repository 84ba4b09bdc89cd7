{{
    config(
        materialized='incremental',
        unique_key='order_date',
        incremental_strategy='delete+insert',
    )
}}

select
    order_date,
    count(*) as orders,
    sum(amount) as revenue
from {{ ref('fct_orders') }}
where status <> 'returned'
{% if is_incremental() %}
    -- Late payments can change the last few days, so they are rebuilt each run.
    and order_date >= (select max(order_date) - interval 3 day from {{ this }})
{% endif %}
group by order_date
