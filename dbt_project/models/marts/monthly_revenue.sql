select
    date_trunc('month', order_date) as month,
    sum(orders) as orders,
    sum(revenue) as revenue
from {{ ref('fct_daily_revenue') }}
group by 1
