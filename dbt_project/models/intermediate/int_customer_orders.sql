select
    o.customer_id,
    min(o.order_date) as first_order_date,
    max(o.order_date) as most_recent_order_date,
    count(*) as order_count
from {{ ref('stg_orders') }} as o
group by o.customer_id
