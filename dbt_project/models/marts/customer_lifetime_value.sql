select
    d.customer_id,
    d.first_name,
    d.last_name,
    d.order_count,
    coalesce(sum(f.amount) filter (where f.status <> 'returned'), 0) as lifetime_value
from {{ ref('dim_customers') }} as d
left join {{ ref('fct_orders') }} as f using (customer_id)
group by all
