const http = require("http");
const greeting = require("./greeting");
http.createServer((req, res) => res.end(greeting("Beanstalk"))).listen(process.env.PORT || 8080);
